// Serve web/dist as the gateway does (same headers, index.html for every
// path that is not a file) and pass /api/* to a running gateway unchanged
// (Host kept, so its same-origin checks see one origin), and WebSocket
// upgrades of /websockify (the VM consoles) and /api/* likewise. For running the
// browser test against a dist/ newer than the one embedded in the binary:
//
//   GATEWAY=http://127.0.0.1:30300 PORT=30400 node web/e2e/serve-dist.mjs
//   CONSOLE_URL=http://127.0.0.1:30400 … node web/e2e/console.mjs
//   CONSOLE_URL=http://127.0.0.1:30400 … node web/e2e/vm-console.mjs

import http from 'node:http'
import net from 'node:net'
import { readFile } from 'node:fs/promises'
import { dirname, join, normalize } from 'node:path'
import { fileURLToPath } from 'node:url'

const DIST = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist')
const GATEWAY = new URL(process.env.GATEWAY || 'http://127.0.0.1:30300')
const PORT = Number(process.env.PORT || 30400)
// The gateway's (crates/apigateway/src/web.rs).
const CSP = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
const TYPES = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8', svg: 'image/svg+xml', png: 'image/png', ico: 'image/x-icon', json: 'application/json' }

const server = http.createServer(async (req, res) => {
  const path = decodeURIComponent(new URL(req.url, 'http://x').pathname)
  if (path.startsWith('/api/')) {
    const up = http.request({ hostname: GATEWAY.hostname, port: GATEWAY.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode, r.headers)
      r.pipe(res)
    })
    up.on('error', (e) => {
      res.writeHead(502, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ code: 502, class: 'BadGatewayError', details: String(e) }))
    })
    req.pipe(up)
    return
  }
  let rel = normalize(path).replace(/^\/+/, '')
  let body
  try {
    if (!rel || rel.includes('..')) throw new Error('index')
    body = await readFile(join(DIST, rel))
  } catch {
    rel = 'index.html'
    body = await readFile(join(DIST, rel))
  }
  res.writeHead(200, {
    'content-type': TYPES[rel.split('.').pop()] || 'application/octet-stream',
    'cache-control': rel.startsWith('assets/') ? 'public, max-age=31536000, immutable' : 'no-cache',
    'content-security-policy': CSP,
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'same-origin',
  })
  res.end(body)
})
// WebSocket upgrades: the request as it came, then bytes both ways.
server.on('upgrade', (req, socket, head) => {
  const path = new URL(req.url, 'http://x').pathname
  if (path !== '/websockify' && !path.startsWith('/api/')) {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
    return
  }
  const up = net.connect(Number(GATEWAY.port || 80), GATEWAY.hostname, () => {
    let lines = `${req.method} ${req.url} HTTP/1.1\r\n`
    for (let i = 0; i < req.rawHeaders.length; i += 2) lines += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`
    up.write(lines + '\r\n')
    if (head && head.length) up.write(head)
    socket.pipe(up)
    up.pipe(socket)
  })
  up.on('error', () => socket.destroy())
  socket.on('error', () => up.destroy())
  up.on('close', () => socket.destroy())
  socket.on('close', () => up.destroy())
})
server.listen(PORT, '127.0.0.1', () => console.log(`dist on http://127.0.0.1:${PORT}, /api → ${GATEWAY.origin}`))
