// Starts Swagger UI on the page's OpenAPI document. A file of its own, so /api/docs needs no
// inline script and works under `script-src 'self'`; validatorUrl null keeps it offline.
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null
  });
});
