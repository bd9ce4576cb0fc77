// Builds the web client into dist/, which build.rs of crates/supernode compiles into the
// supernode binary. Everything the page loads is a file of dist/ served from the supernode's own
// origin: no inline script (the CSP forbids it), no data: URLs, no other origin.
import { defineConfig } from "vite";

export default defineConfig({
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // Small images would become data: URLs, which the CSP (img-src 'self') refuses.
    assetsInlineLimit: 0,
    // The modulepreload polyfill is for old browsers; keep the page free of anything inline.
    modulePreload: { polyfill: false },
    sourcemap: false,
    reportCompressedSize: true,
  },
});
