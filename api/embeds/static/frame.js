/* Inside the button's iframe (Merci's origin). A logged-out supporter logs in in a
 * popup; the popup hands back a one-time grant (postMessage, addressed to Merci's
 * origin only), which this frame trades for its own partitioned session cookie. */
(function () {
  "use strict";
  var login = document.querySelector("[data-merci-login]");
  var granting = false;

  window.addEventListener("message", function (event) {
    if (event.origin !== location.origin || !event.data || event.data.type !== "merci:grant") { return; }
    granting = true;
    fetch("/embed/session", {
      method: "POST", credentials: "include",
      body: new URLSearchParams({ code: String(event.data.code) })
    }).then(function () { location.reload(); }, function () { location.reload(); });
  });

  if (login) {
    login.addEventListener("click", function (event) {
      var popup = window.open(login.href, "merci-login", "popup,width=480,height=640");
      if (!popup) { return; }  // blocked: the link opens Merci in a tab instead
      event.preventDefault();
      var timer = setInterval(function () {
        if (popup.closed) {
          clearInterval(timer);
          if (!granting) { location.reload(); }
        }
      }, 400);
    });
  }
})();

/* Likejacking: the button counts only the user's own click on a button in plain view.
 * A page may frame the button (that is what it is for), but not hide it under a decoy:
 * transparent, scaled down, clipped to a few pixels or covered by something that lets
 * clicks through. IntersectionObserver v2 (trackVisibility) says whether the button is
 * visible as painted, through every frame above it; where the browser lacks it, the
 * button must at least lie wholly in the viewport. It must have been so for
 * `data-merci-visible-ms`, and the click must be trusted, with user activation. Only
 * then does the form carry the proof the server issued with the page (`shown`), without
 * which the server counts nothing. */
(function () {
  "use strict";
  var form = document.querySelector("form[data-merci-shown]");
  if (!form) { return; }
  var button = form.querySelector("button");
  var field = form.querySelector('input[name="shown"]');
  var need = parseInt(form.getAttribute("data-merci-visible-ms"), 10) || 500;
  var since = null, timer = null;
  var v2 = "IntersectionObserver" in window && "isVisible" in IntersectionObserverEntry.prototype;

  function seen(visible) {
    if (!visible) {
      since = null;
      clearTimeout(timer);
      button.removeAttribute("data-merci-ready");
      return;
    }
    if (since !== null) { return; }
    since = performance.now();
    timer = setTimeout(function () { button.setAttribute("data-merci-ready", "1"); }, need);
  }

  if ("IntersectionObserver" in window) {
    var options = { threshold: [0, 1] };
    if (v2) { options.trackVisibility = true; options.delay = 100; }
    new IntersectionObserver(function (entries) {
      var e = entries[entries.length - 1];
      seen(e.isIntersecting && e.intersectionRatio >= 0.99 && (!v2 || e.isVisible));
    }, options).observe(button);
  }

  button.addEventListener("click", function (event) {
    var activated = !navigator.userActivation || navigator.userActivation.isActive;
    var long = since !== null && performance.now() - since >= need;
    if (!event.isTrusted || !activated || !long) {
      event.preventDefault();
      field.value = "";
      button.setAttribute("data-merci-refused", !long ? "not-visible" : "not-trusted");
      return;
    }
    field.value = form.getAttribute("data-merci-shown");
  });
})();
