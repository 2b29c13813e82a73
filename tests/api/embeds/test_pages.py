"""Merci's pages for other sites, over HTTP: badges (ETag), oEmbed, the auto-submit
and click pages without JavaScript, the button frame's headers and session grant,
and malformed links refused clearly with nothing changed."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from api.embeds.button import VISIBLE_MS
from tests.api.partners.helpers import World, form_fields, http, log_in
from tests.conftest import unique, wait_for

SUBMIT = """mutation($url: String!, $title: String!) { submitThing(input: {url: $url, title: $title}) {
  thing { id url } userErrors { code } } }"""
ME_CLICKS = "{ me { clicks { nodes { source thing { url title } } } } }"


def creator_thing(world: World, title: str = "A post") -> tuple[dict[str, Any], dict[str, Any]]:
    creator = world.supporter(funds=0)
    url = f"https://{unique('blog')}.example/post"
    world.prove_site(creator, url)
    thing = world.gql.as_(creator["token"])(SUBMIT, {"url": url, "title": title})["submitThing"]["thing"]
    thing["pk"] = int(world.scalar("select id from things where url = $1", url))
    return creator, thing


def counts(world: World) -> dict[str, int]:
    return {t: int(world.scalar(f"select count(*) from {t}"))
            for t in ("things", "clicks", "thing_discovery", "auth_tokens", "embed_grants")}


def test_badges_count_and_revalidate(world: World) -> None:
    creator, thing = creator_thing(world)
    world.sql("insert into thing_stats (thing_id, period, clicks) values ($1, '2024-01-01', 2), ($1, '2024-02-01', 1)",
              thing["pk"])
    r = httpx.get(f"{world.url}/badge/thing/{thing['id']}.svg")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    assert "merci: 3 clicks" in r.text and "<script" not in r.text
    assert r.headers["cache-control"] == "public, max-age=300" and "default-src 'none'" in r.headers[
        "content-security-policy"]
    etag = r.headers["etag"]
    again = httpx.get(f"{world.url}/badge/thing/{thing['id']}.svg", headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert "3 clics" in httpx.get(f"{world.url}/badge/thing/{thing['id']}.svg?lang=fr").text
    assert "3 clicks" in httpx.get(f"{world.url}/badge/url.svg", params={"url": thing["url"] + "?utm_medium=x"}).text
    assert "3 clicks" in httpx.get(f"{world.url}/badge/creator/{creator['handle']}.svg").text

    world.sql("update thing_stats set clicks = clicks + 1 where thing_id = $1 and period = '2024-02-01'", thing["pk"])
    changed = httpx.get(f"{world.url}/badge/thing/{thing['id']}.svg", headers={"if-none-match": etag})
    assert changed.status_code == 200 and "4 clicks" in changed.text and changed.headers["etag"] != etag

    assert httpx.get(f"{world.url}/badge/thing/VGhpbmc6OTk5OTk5.svg").status_code == 404
    assert httpx.get(f"{world.url}/badge/thing/not-an-id.svg").status_code == 400
    assert httpx.get(f"{world.url}/badge/url.svg", params={"url": "javascript:1"}).status_code == 400
    assert httpx.get(f"{world.url}/badge/creator/nobody_here.svg").status_code == 404


def test_oembed_for_buttons(world: World) -> None:
    creator, thing = creator_thing(world, "Oembedded")
    r = httpx.get(f"{world.url}/oembed", params={"url": thing["url"], "format": "json"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["version"], body["type"], body["provider_name"], body["title"]) == ("1.0", "rich", "Merci",
                                                                                    "Oembedded")
    assert body["author_name"] == creator["handle"] and (body["width"], body["height"]) == (190, 32)
    assert body["html"].startswith(f'<iframe src="{world.url}/embed/button?url=') and r.headers[
        "access-control-allow-origin"] == "*"
    link = f"{world.url}/submit?" + urlencode({"url": "https://unknown.example/new", "title": "New"})
    assert httpx.get(f"{world.url}/oembed", params={"url": link}).json()["title"] == "New"
    # The /submit page advertises it.
    page = httpx.get(f"{world.url}/submit", params={"url": thing["url"]})
    assert re.search(r'<link rel="alternate" type="application/json\+oembed" href="[^"]+/oembed\?url=', page.text)

    def status(**params: str) -> int:
        return httpx.get(f"{world.url}/oembed", params=params).status_code

    assert status(url="https://unknown.example/") == 404
    assert status(url=thing["url"], format="xml") == 501
    assert status(url=thing["url"], maxwidth="50") == 404
    assert status(url=thing["url"], maxwidth="wide") == 400
    assert status() == 400


def test_malformed_auto_submit_links_are_refused_and_change_nothing(world: World) -> None:
    creator, _ = creator_thing(world)
    fan = world.supporter()
    browser = http(world.url)
    assert log_in(browser, fan["email"]).status_code == 303  # on to /account
    before = counts(world)
    for query, expected in (
        ({}, ["MISSING_URL"]),
        ({"url": "not a url"}, ["INVALID_URL"]),
        ({"url": "ftp://files.example/x"}, ["INVALID_URL"]),
        ({"url": "https://ok.example/", "category": "podcasts", "language": "english", "hidden": "maybe",
          "tags": ",".join(f"t{i}" for i in range(11))},
         ["INVALID_CATEGORY", "INVALID_LANGUAGE", "TOO_MANY_TAGS", "INVALID_HIDDEN"]),
        ({"url": "https://ok.example/", "user_id": "Not A Handle!"}, ["INVALID_OWNER"]),
        ({"url": "https://ok.example/", "user_id": "nobody_at_all"}, ["UNKNOWN_OWNER"]),
        ({"url": "https://ok.example/", "title": "x" * 301}, ["INVALID_TITLE"]),
    ):
        for client in (httpx, browser):  # logged out and logged in alike
            r = client.get(f"{world.url}/submit/auto", params=query)
            assert r.status_code == 400, (query, r.status_code)
            assert re.findall(r"<code>([A-Z_]+)</code>", r.text) == expected, (query, r.text)
    # A well-formed link only shows the would-be thing: a GET changes nothing.
    fine = browser.get("/submit/auto", params={"user_id": creator["handle"], "url": "https://fresh.example/a",
                                               "title": "Fresh", "language": "fr_FR"})
    assert fine.status_code == 200 and "Fresh" in fine.text
    assert counts(world) == before


def test_click_without_javascript_through_the_submit_page(world: World) -> None:
    creator, _ = creator_thing(world)
    fan = world.supporter()
    url = f"https://{unique('new')}.example/episode-1"
    query = {"user_id": f"flattr:{creator['handle']}", "url": url, "title": "Episode 1", "description": "Pilot",
             "category": "audio", "language": "fr_FR", "tags": "podcast, Pilot", "hidden": "0"}
    browser = http(world.url)
    page = browser.get("/submit/auto", params=query)
    assert page.status_code == 200 and "Log in to say merci" in page.text
    login_href = re.search(r'href="(/embed/login\?[^"]+)"', page.text).group(1).replace("&amp;", "&")
    nxt = httpx.URL(login_href).params["next"]
    done = log_in(browser, fan["email"], **dict(httpx.URL(login_href).params))
    assert done.status_code == 303 and done.headers["location"] == nxt
    page = browser.get(nxt)
    fields = form_fields(page.text)
    assert fields["csrf"] and fields["url"] == url
    before = counts(world)
    # Refused: no Origin, another site's Origin, a wrong token.
    assert browser.post(nxt, data=fields).status_code == 403
    assert browser.post(nxt, data=fields, headers={"origin": "https://evil.example"}).status_code == 403
    assert browser.post(nxt, data=fields | {"csrf": "0" * 64}, headers={"origin": world.url}).status_code == 403
    assert counts(world) == before

    accepted = browser.post(nxt, data=fields, headers={"origin": world.url})
    assert accepted.status_code == 303 and "done=1" in accepted.headers["location"]
    thanks = browser.get(accepted.headers["location"])
    assert "Your click was accepted" in thanks.text
    thing = world.sql("select t.id, t.owner_id, t.title, t.description, t.category, t.language, t.tags, d.owner_hint"
                      " from things t join thing_discovery d on d.thing_id = t.id where t.url = $1", url)[0]
    assert (thing["owner_id"], thing["title"], thing["description"], thing["category"], thing["language"],
            list(thing["tags"]), thing["owner_hint"]) == (None, "Episode 1", "Pilot", "audio", "fr",
                                                          ["pilot", "podcast"], creator["pk"])
    me = world.gql.as_(fan["token"])
    clicks = wait_for(lambda: me(ME_CLICKS)["me"]["clicks"]["nodes"], what="the click in me")
    assert clicks == [{"source": "CLICK", "thing": {"url": url, "title": "Episode 1"}}]
    # Posting again (a reload) counts once; the page now says so.
    assert browser.post(nxt, data=fields, headers={"origin": world.url}).status_code == 303
    assert "already thanked it this month" in browser.get(nxt).text
    wait_for(lambda: world.scalar("select count(*) from thing_discovery where thing_id = $1 and status <> 'pending'",
                                  thing["id"]), what="owner discovery tried")
    assert world.scalar("select count(*) from clicks where supporter_id = $1", fan["pk"]) == 1


def test_button_frame_headers_states_and_grant(world: World) -> None:
    creator, thing = creator_thing(world, "Framed")
    src = f"{world.url}/embed/button?url={quote(thing['url'], safe='')}"
    anon = httpx.get(src)
    assert anon.status_code == 200
    csp = anon.headers["content-security-policy"]
    assert "frame-ancestors *" in csp and "script-src 'self'" in csp and "x-frame-options" not in anon.headers
    assert anon.headers["cache-control"] == "no-store"
    assert 'aria-label="Merci: log in to thank Framed"' in anon.text and "0 clicks" in anon.text
    fr = httpx.get(src + "&lang=fr")
    assert 'aria-label="Merci : connectez-vous pour remercier Framed"' in fr.text and 'lang="fr"' in fr.text
    login = httpx.get(f"{world.url}/embed/login?popup=1")
    assert "frame-ancestors 'none'" in login.headers["content-security-policy"]
    assert login.headers["x-frame-options"] == "DENY"

    # The popup hands a one-time grant to the frame, which trades it for a partitioned cookie.
    fan = world.supporter()
    popup = http(world.url)
    granted = log_in(popup, fan["email"], popup="1")
    code = re.search(r'data-code="(mg_[^"]+)"', granted.text).group(1)
    frame = http(world.url)
    assert frame.post("/embed/session", data={"code": code}, headers={"origin": "https://evil.example"}
                      ).status_code == 403
    swapped = frame.post("/embed/session", data={"code": code}, headers={"origin": world.url})
    assert swapped.status_code == 204
    cookie = swapped.headers["set-cookie"]
    assert cookie.startswith("merci_embed=ms_") and all(
        flag in cookie.lower() for flag in ("httponly", "secure", "samesite=none", "partitioned"))
    assert frame.post("/embed/session", data={"code": code}, headers={"origin": world.url}).status_code == 403
    token = cookie.split(";")[0].split("=", 1)[1]
    as_frame = {"cookie": f"merci_embed={token}"}  # (httpx keeps Secure cookies off plain http)
    mine = httpx.get(f"{world.url}/embed/button?url={quote(thing['url'], safe='')}", headers=as_frame)
    assert 'aria-label="Merci: thank Framed"' in mine.text
    fields = form_fields(mine.text)
    # A click needs Merci's own origin and this session's token.
    post = f"{world.url}/embed/button?lang=en"
    assert httpx.post(post, data=fields, headers=as_frame | {"origin": "http://localhost:1"}).status_code == 403
    assert httpx.post(post, data=fields | {"csrf": "f" * 64}, headers=as_frame | {"origin": world.url}
                      ).status_code == 403
    # ...and the proof, put into the form by frame.js, that the button was in plain view
    # (likejacking): without it, or too soon after the page was shown, nothing counts.
    shown = re.search(r'data-merci-shown="([^"]+)"', mine.text).group(1)
    assert fields["shown"] == ""
    early = httpx.post(post, data=fields | {"shown": shown}, headers=as_frame | {"origin": world.url})
    assert early.status_code == 409 and "not in plain view long enough" in early.text
    time.sleep(VISIBLE_MS / 1000)
    for bad in ("", "1." + shown.split(".")[1], shown.split(".")[0] + "." + "0" * 64):
        refused = httpx.post(post, data=fields | {"shown": bad}, headers=as_frame | {"origin": world.url})
        assert refused.status_code == 409, bad
    ok = httpx.post(post, data=fields | {"shown": shown}, headers=as_frame | {"origin": world.url})
    assert ok.status_code == 303
    after = httpx.get(world.url + ok.headers["location"], headers=as_frame)
    assert "Thank you! Your click counts this month." in after.text and "1 click" in after.text
    own = world.supporter(funds=0)  # the creator sees their own thing as theirs
    creator_grant = log_in(http(world.url), creator["email"], popup="1")
    creator_code = re.search(r'data-code="(mg_[^"]+)"', creator_grant.text).group(1)
    creator_cookie = http(world.url).post("/embed/session", data={"code": creator_code},
                                          headers={"origin": world.url}).headers["set-cookie"]
    theirs = httpx.get(src, headers={"cookie": creator_cookie.split(";")[0]})
    assert 'aria-label="Framed is yours"' in theirs.text
    broke = httpx.get(src, headers={"cookie": f"merci_embed={own['token']}"})
    assert "Top up your Merci balance to thank Framed" in broke.text


def test_pages_in_english_and_french(world: World) -> None:
    creator, thing = creator_thing(world, "Bilingual")
    submit = f"{world.url}/submit?url={quote(thing['url'], safe='')}"

    fr = httpx.get(submit, headers={"accept-language": "fr-CA, en;q=0.5"})
    assert fr.headers["content-language"] == "fr" and '<html lang="fr">' in fr.text
    assert "<title>Dire merci: Bilingual</title>" in fr.text and f"par {creator['handle']}" in fr.text
    assert "· 0 clic</p>" in fr.text and "Connectez-vous pour dire merci" in fr.text  # 0 is singular in French
    assert set(re.split(r",\s*", fr.headers["vary"])) >= {"Accept-Language", "Cookie"}
    en = httpx.get(submit + "&lang=en", headers={"accept-language": "fr"})  # the link's choice wins
    assert en.headers["content-language"] == "en" and "<title>Say merci: Bilingual</title>" in en.text
    assert "· 0 clicks</p>" in en.text and f"by {creator['handle']}" in en.text
    remembered = httpx.get(submit, headers={"accept-language": "en", "cookie": "merci_lang=fr"})
    assert remembered.headers["content-language"] == "fr" and "Dire merci" in remembered.text

    login = httpx.get(f"{world.url}/embed/login", headers={"accept-language": "fr"})
    assert "<h1>Connexion à Merci</h1>" in login.text and "Mot de passe" in login.text
    assert "<h1>Log in to Merci</h1>" in httpx.get(f"{world.url}/embed/login?lang=en").text

    # Badges follow the link only (one image for every reader of a README), with CLDR's plurals.
    badge = f"{world.url}/badge/thing/{thing['id']}.svg"
    assert "merci: 0 clicks" in httpx.get(badge, headers={"accept-language": "fr"}).text
    assert "merci: 0 clic<" in httpx.get(badge + "?lang=fr").text
    world.sql("insert into thing_stats (thing_id, period, clicks) values ($1, '2024-01-01', 1)", thing["pk"])
    assert "merci: 1 clic<" in httpx.get(badge + "?lang=fr").text and "1 click<" in httpx.get(badge).text
    world.sql("update thing_stats set clicks = 1234 where thing_id = $1", thing["pk"])
    assert "merci: 1\u202f234 clics<" in httpx.get(badge + "?lang=fr").text
    assert "merci: 1,234 clicks<" in httpx.get(badge).text
    assert "inconnu" in httpx.get(f"{world.url}/badge/creator/nobody_here.svg?lang=fr").text
