import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

// Reproducible output: content hashes only, no timestamps, no source maps
// with absolute paths. The dev server proxies the API gateway.
export default defineConfig({
  plugins: [vue()],
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    target: 'es2020',
    assetsInlineLimit: 0,
    reportCompressedSize: false,
    rollupOptions: {
      output: {
        entryFileNames: 'assets/[name]-[hash].js',
        chunkFileNames: (c) => `assets/${c.name.replace(/\.vue_vue_type.*$/, '')}-[hash].js`,
        assetFileNames: 'assets/[name]-[hash][extname]',
      },
    },
  },
  // noVNC (core/util/browser.js) uses a top-level await; every browser
  // that runs this ES-module build has it (Chrome 89, Firefox 89, Safari 15).
  esbuild: { supported: { 'top-level-await': true } },
  optimizeDeps: { esbuildOptions: { supported: { 'top-level-await': true } } },
  server: {
    proxy: {
      '/api': { target: 'http://127.0.0.1:30300', changeOrigin: false, ws: true },
      // The console WebSockets (VNC and serial).
      '/websockify': { target: 'ws://127.0.0.1:30300', changeOrigin: false, ws: true },
    },
  },
})
