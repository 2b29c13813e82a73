"""Merci on other people's pages: the embeddable button, badges, oEmbed, the
auto-submit and click pages, and the OAuth consent pages (server-rendered HTML)."""
