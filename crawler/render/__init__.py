"""Pages that need JavaScript: a headless Chromium over the DevTools protocol, every request
it makes fetched by the crawler's own fetch layer."""
