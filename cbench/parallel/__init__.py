"""Device meshes, logical-axis rules and sharded parameter init."""
