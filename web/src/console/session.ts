// Console sessions: `POST /api/v1/webconsole/server/<id>` and the WebSocket
// address it names. Shared by the VNC and serial viewers.
import { request } from '../api/client'

export type Protocol = 'vnc' | 'serial'

export interface ConsoleSession {
  session: string
  protocol: Protocol
  /** `/websockify?access_token=…` (same origin), or an absolute ws(s) URL. */
  websocket: string
  access_url?: string
  connect_params?: string
  expires_at?: string
  server_id?: string
  instance_name?: string
  /** When this page got it (ms). */
  received: number
}

/** Ask the gateway for a console session (VNC is the empty body, as Cloudpods' dashboard sends). */
export async function openSession(serverId: string, protocol: Protocol, signal?: AbortSignal): Promise<ConsoleSession> {
  const body = protocol === 'serial' ? { protocol: 'serial' } : {}
  const r = await request('POST', `/api/v1/webconsole/server/${encodeURIComponent(serverId)}`, { body, signal })
  const b = r.body ?? {}
  if (typeof b.websocket !== 'string' || !b.websocket) {
    throw new Error('the gateway answered without a console address (websocket)')
  }
  return { ...b, protocol: b.protocol === 'serial' ? 'serial' : b.protocol === 'vnc' ? 'vnc' : protocol, received: Date.now() }
}

/** Still usable for a reconnect (15 s margin; 10 min if expires_at is unreadable). */
export function usable(s: ConsoleSession, now = Date.now()): boolean {
  const t = s.expires_at ? Date.parse(s.expires_at) : NaN
  const until = Number.isFinite(t) ? t : s.received + 10 * 60_000
  return now < until - 15_000
}

/** `ws(s)://<this origin><path>` for a relative address. */
export function wsUrl(address: string): string {
  if (/^wss?:\/\//i.test(address)) return address
  const u = new URL(address, window.location.href)
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:'
  return u.toString()
}

/** How a viewer's connection ended. */
export interface Closed {
  /** The WebSocket opened (false: refused before the upgrade, or unreachable). */
  opened: boolean
  /** The viewer was fully connected (RFB handshake done; for serial, the socket open). */
  connected: boolean
  code: number
  reason: string
  /** Set when the viewer itself gave up (e.g. a failed VNC handshake). */
  message?: string
}

export interface ViewerEvents {
  connected(): void
  closed(c: Closed): void
}

export interface Viewer {
  /** Close the socket and free everything; no more events after this. */
  destroy(): void
  focus(): void
}
