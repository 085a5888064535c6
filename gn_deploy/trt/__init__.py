"""TensorRT: plugin library loading, shape profiles, precision planning, engine build and run.

Everything that needs TensorRT imports it inside the function that needs it; the planning
logic here runs anywhere.
"""
