"""The directory subgraph: sites, listings, categories, search."""
