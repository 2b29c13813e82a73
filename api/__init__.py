"""The api subgraph: viewer, accounts, tenants, money, clicks, things, months."""
