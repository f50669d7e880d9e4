// Starts swagger-ui on /docs from the package's own copy (no CDN, no inline script: the page's CSP forbids both).
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", validatorUrl: null, deepLinking: true });
