"""GraphQL plumbing shared by both subgraphs: context, relay, errors, money, limits."""
