// The serial console: xterm.js (DOM renderer) over a WebSocket of raw
// terminal bytes. Loaded only by the console page.
import { Terminal } from '@xterm/xterm'
import { FitAddon } from '@xterm/addon-fit'
import '@xterm/xterm/css/xterm.css'
import type { Viewer, ViewerEvents } from './session'

export interface SerialViewer extends Viewer {
  /** The whole buffer (scrollback included) as text, wrapped rows joined. */
  text(): string
}

/** For tests and copy: the element gets `terminalText()`. */
export interface TerminalElement extends HTMLElement {
  terminalText?: () => string
}

export function openViewer(target: TerminalElement, url: string, ev: ViewerEvents): SerialViewer {
  let done = false
  let opened = false
  const term = new Terminal({
    cursorBlink: true,
    scrollback: 5000,
    fontSize: 14,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
    theme: { background: '#0b0f17', foreground: '#e2e8f0', cursor: '#e2e8f0' },
  })
  const fit = new FitAddon()
  term.loadAddon(fit)
  term.open(target)
  const refit = () => {
    try {
      if (target.clientWidth > 0 && target.clientHeight > 0) fit.fit()
    } catch {
      /* not laid out yet */
    }
  }
  refit()
  const ro = new ResizeObserver(refit)
  ro.observe(target)

  const text = () => {
    const b = term.buffer.active
    const lines: string[] = []
    for (let i = 0; i < b.length; i++) {
      const l = b.getLine(i)
      if (!l) continue
      const s = l.translateToString(true)
      if (l.isWrapped && lines.length) lines[lines.length - 1] += s
      else lines.push(s)
    }
    return lines.join('\n').replace(/\s+$/, '')
  }
  target.terminalText = text

  const enc = new TextEncoder()
  const ws = new WebSocket(url, ['binary'])
  ws.binaryType = 'arraybuffer'
  const send = (bytes: Uint8Array) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(bytes)
  }
  const onData = term.onData((d) => send(enc.encode(d)))
  // Mouse reports and the like: one byte per char code.
  const onBinary = term.onBinary((d) => {
    const b = new Uint8Array(d.length)
    for (let i = 0; i < d.length; i++) b[i] = d.charCodeAt(i) & 0xff
    send(b)
  })

  ws.onopen = () => {
    if (done) return
    opened = true
    ev.connected()
    term.focus()
  }
  ws.onmessage = (m) => {
    if (done) return
    if (typeof m.data === 'string') term.write(m.data)
    else term.write(new Uint8Array(m.data as ArrayBuffer))
  }
  ws.onclose = (e) => {
    if (done) return
    done = true
    if (opened) term.write('\r\n\x1b[90m[console closed]\x1b[0m\r\n')
    term.options.disableStdin = true
    ev.closed({ opened, connected: opened, code: e.code, reason: e.reason })
  }

  let disposed = false
  return {
    destroy() {
      done = true
      if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000)
      if (disposed) return
      disposed = true
      ro.disconnect()
      onData.dispose()
      onBinary.dispose()
      if (target.terminalText === text) delete target.terminalText
      term.dispose()
    },
    focus() {
      term.focus()
    },
    text,
  }
}
