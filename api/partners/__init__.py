"""The partner API: bulk things and clicks, analytics, webhooks, OAuth clients and linked accounts."""
