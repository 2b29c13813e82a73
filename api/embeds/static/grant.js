/* The login popup's last page: hand the one-time grant to the button that opened
 * it. Addressed to Merci's own origin, so no other opener can receive it. */
(function () {
  "use strict";
  var main = document.getElementById("merci-grant");
  var code = main && main.getAttribute("data-code");
  if (code && window.opener) {
    window.opener.postMessage({ type: "merci:grant", code: code }, location.origin);
    setTimeout(function () { window.close(); }, 150);
  }
})();
