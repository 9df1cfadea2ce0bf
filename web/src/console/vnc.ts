// The VNC viewer: noVNC's RFB over a WebSocket this module opens itself (so
// the close code and reason are known). Loaded only by the console page.
import RFB from '@novnc/novnc'
import type { Closed, Viewer, ViewerEvents } from './session'

export interface VncViewer extends Viewer {
  sendCtrlAltDel(): void
  setScale(on: boolean): void
}

export function openViewer(target: HTMLElement, url: string, ev: ViewerEvents, opts: { scale: boolean }): VncViewer {
  let done = false
  let opened = false
  let connected = false
  let closeEv: CloseEvent | null = null
  let security = ''

  const ws = new WebSocket(url, ['binary'])
  ws.binaryType = 'arraybuffer'
  // Registered before RFB attaches its own handlers, so these run first.
  ws.addEventListener('open', () => {
    opened = true
  })
  ws.addEventListener('close', (e) => {
    closeEv = e
  })

  const rfb = new RFB(target, ws, { shared: true })
  rfb.scaleViewport = opts.scale
  rfb.resizeSession = false
  rfb.clipViewport = false
  rfb.focusOnClick = true
  rfb.background = '#000'

  rfb.addEventListener('connect', () => {
    if (done) return
    connected = true
    ev.connected()
  })
  rfb.addEventListener('securityfailure', (e) => {
    const d = (e as CustomEvent).detail ?? {}
    security = d.reason || `status ${d.status ?? '?'}`
  })
  rfb.addEventListener('credentialsrequired', () => {
    // The contract is security type None; a password prompt means a misrouted socket.
    security = 'the VNC server asks for credentials'
    rfb.disconnect()
  })
  rfb.addEventListener('disconnect', (e) => {
    if (done) return
    done = true
    const clean = !!(e as CustomEvent).detail?.clean
    const c: Closed = { opened, connected, code: closeEv?.code ?? 0, reason: closeEv?.reason ?? '' }
    if (security) c.message = `VNC security negotiation failed: ${security}`
    else if (!clean && !closeEv && opened) c.message = 'the VNC handshake with the server failed'
    ev.closed(c)
  })

  return {
    destroy() {
      if (done) return
      done = true
      try {
        rfb.disconnect()
      } catch {
        /* already gone */
      }
      if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000)
    },
    focus() {
      rfb.focus({ preventScroll: true })
    },
    sendCtrlAltDel() {
      rfb.sendCtrlAltDel()
      rfb.focus({ preventScroll: true })
    },
    setScale(on: boolean) {
      rfb.scaleViewport = on
    },
  }
}
