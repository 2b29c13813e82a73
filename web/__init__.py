"""The web app: Merci in a browser for supporters, creators, partners and admins,
server-rendered (Jinja2), in English and French, working without JavaScript.

It is a frontend of the public GraphQL API and nothing else. Conventions every page
module keeps (another engineer adding a page should only have to follow these):

- **Data only through GraphQL.** Each page's operations are `.graphql` files in
  `web/operations/`, one named operation per file, the file named after it
  (`AccountPage.graphql` holds `query AccountPage`). A page runs them with
  `await gql.run(request, "AccountPage", {...})` (web.gql): in-process, through the
  merged schema `merci serve all` serves, as the request's principal (the
  `merci_session` cookie, as /graphql reads it) — never SQL, never `merci.*` domain
  calls. tests/web/test_operations.py validates every file against schema.graphql.
- **Forms.** Every state change is a POST from a `<form>` carrying `{{ csrf_field() }}`;
  the handler starts with `data = await forms.posted(request)`, which refuses (403) a
  POST whose Origin is not Merci's or whose CSRF token (bound to the session, or before
  login to a random cookie) does not hold. Success answers with a 303 redirect
  (POST-redirect-GET) to a page that says what happened (`?done=<word>`, words in
  web.words); userErrors re-render the form (400) with the messages, nothing changed.
  `web.pages.act(request, "Mutation", variables, again=<the page's renderer>, to=...,
  done=...)` does both. A secret shown once (an API key) is in the POST's own answer.
- **Who may see a page.** `@pages.account_required` sends the logged-out to
  /login?next=<this path>; what a page may show is what the API answers for the
  principal (another user's ids simply resolve to nothing: a 404 page).
- **Templates** extend `base.html` (skip link, header/nav/main/footer landmarks, the
  language switch) and use `_()`/`ngettext()` (graph.pages) so `merci catalogs update`
  finds the words; money from GraphQL goes through the `money` filter (`{amount,
  currency}` or merci.money.Money). Charts come from web.charts: SVG with a title, a
  description and a table holding the same numbers.
- **Routes** are listed in web.routes (served by the api face; k8s/base/ingress.yaml
  sends their paths there, tests/k8s checks it). Role modules: web.everyone (home,
  sign-up, log in/out, password, language), web.supporter (/account with its
  subscribe and password forms, /topup),
  web.creator (/creator), web.partner (/partner), web.admin (/admin).
"""
