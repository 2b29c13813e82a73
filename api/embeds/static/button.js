/* Merci buttons. Include once, anywhere on the page:
 *   <script src="https://MERCI/embed/button.js" async></script>
 *   <a class="merci-button" href="https://MERCI/submit?url=…&title=…">Merci</a>
 * Each anchor becomes Merci's button in an iframe (count, the supporter's state, the
 * click). Without JavaScript the anchor still leads to Merci's page for the click.
 * The page's URL is used when the link names none; `data-lang` (or the page's
 * language) picks English or French. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.src) { return; }
  var base = new URL(script.src).origin;
  var WIDTH = 190, HEIGHT = 32;

  function pageUrl() {
    var canonical = document.querySelector('link[rel="canonical"]');
    return canonical && canonical.href ? canonical.href : location.href.split("#")[0];
  }

  function upgrade(anchor) {
    var link;
    try { link = new URL(anchor.href, location.href); } catch (e) { return; }
    var path = link.pathname.replace(/\/+$/, "");
    if (link.origin !== base || (path !== "/submit" && path !== "/submit/auto")) { return; }
    var query = link.searchParams;
    if (!query.get("url") && !query.get("thing")) { query.set("url", pageUrl()); }
    var lang = (anchor.getAttribute("data-lang") || anchor.lang || document.documentElement.lang || "").slice(0, 2);
    if (lang) { query.set("lang", lang.toLowerCase()); }
    var frame = document.createElement("iframe");
    frame.src = base + "/embed/button?" + query.toString();
    frame.width = String(WIDTH);
    frame.height = String(HEIGHT);
    frame.title = anchor.getAttribute("title") || anchor.textContent.trim() || "Merci";
    frame.setAttribute("style", "border:0;overflow:hidden;vertical-align:middle");
    frame.setAttribute("scrolling", "no");
    frame.className = "merci-button-frame";
    anchor.setAttribute("data-merci-upgraded", "1");
    anchor.parentNode.replaceChild(frame, anchor);
  }

  function scan() {
    var anchors = document.querySelectorAll("a.merci-button:not([data-merci-upgraded])");
    for (var i = 0; i < anchors.length; i++) { upgrade(anchors[i]); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", scan);
  } else {
    scan();
  }
  window.MerciButtons = { scan: scan };  // for pages that add anchors later
})();
