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
