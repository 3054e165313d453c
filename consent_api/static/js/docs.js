// Starts swagger-ui on /docs. A file rather than an inline script, so the page needs no
// 'unsafe-inline' and keeps the portal's Content-Security-Policy.
window.SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  presets: [window.SwaggerUIBundle.presets.apis],
  // The default validator badge is an image from validator.swagger.io; nothing leaves this origin.
  validatorUrl: null,
});
