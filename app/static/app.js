/* The dashboard's own script: what htmx does not do by itself. Loaded from 'self', never inline. */
(function () {
  "use strict";

  function notify(message) {
    var region = document.getElementById("page-alert");
    if (!region) return;
    var notice = document.createElement("p");
    notice.className = "notice notice-error";
    notice.textContent = message;
    region.replaceChildren(notice);
  }

  // Every htmx request carries the session's CSRF token from the page's meta tag.
  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) event.detail.headers["X-CSRF-Token"] = meta.content;
  });

  // Answers htmx is configured not to swap (a 500, say) and lost connections get a visible notice.
  document.addEventListener("htmx:responseError", function (event) {
    notify("The server could not answer (" + event.detail.xhr.status + "). Try again, or reload the page.");
  });
  document.addEventListener("htmx:sendError", function () {
    notify("Cannot reach the server. The page will work again once the connection is back.");
  });

  // A later request that worked means the problem has gone: clear its notice.
  document.addEventListener("htmx:afterRequest", function (event) {
    var region = document.getElementById("page-alert");
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    if (region && status >= 200 && status < 300 && event.detail.target !== region) {
      region.replaceChildren();
    }
  });

  // Field messages arrive out of band; mirror them in aria-invalid on the field they describe.
  document.addEventListener("htmx:afterSettle", function () {
    document.querySelectorAll(".field-error").forEach(function (slot) {
      var field = document.querySelector('[aria-describedby~="' + slot.id + '"]');
      if (!field) return;
      if (slot.textContent.trim()) {
        field.setAttribute("aria-invalid", "true");
      } else {
        field.removeAttribute("aria-invalid");
      }
    });
  });
})();
