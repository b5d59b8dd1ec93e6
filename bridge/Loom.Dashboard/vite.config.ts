import { defineConfig } from 'vite';

// The bridge serves dist/ at / (copied beside its assembly as dashboard/); nothing is fetched from
// elsewhere at run time. The dev server (npx vite) proxies /v1 to a bridge on 127.0.0.1:7071.
export default defineConfig({
  base: './',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    reportCompressedSize: false,
    chunkSizeWarningLimit: 400,
  },
  server: {
    proxy: { '/v1': 'http://127.0.0.1:7071' },
  },
});
