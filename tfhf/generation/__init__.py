"""Text generation with causal language models, XLA-compiled with bucketed prompt shapes."""
