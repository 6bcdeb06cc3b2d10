"""The project's tools: the starter build, face-network training and conversion."""
