"""The api subgraph's contribution to the directory's Site entity: money-side fields."""
