// Small display helpers shared by the pages.

export function mb(n: unknown): string {
  const v = Number(n)
  if (!isFinite(v)) return ''
  if (v >= 1024 * 1024) return `${(v / 1024 / 1024).toFixed(1)} TB`
  if (v >= 1024) return `${(v / 1024).toFixed(v % 1024 === 0 ? 0 : 1)} GB`
  return `${v} MB`
}

export function bytes(n: unknown): string {
  const v = Number(n)
  if (!isFinite(v) || v <= 0) return v === 0 ? '0 B' : ''
  const u = ['B', 'KB', 'MB', 'GB', 'TB']
  let i = 0
  let x = v
  while (x >= 1024 && i < u.length - 1) {
    x /= 1024
    i++
  }
  return `${x.toFixed(i ? 1 : 0)} ${u[i]}`
}

export function time(s: unknown): string {
  if (!s || typeof s !== 'string') return ''
  const d = new Date(s)
  if (isNaN(d.getTime())) return s
  const pad = (n: number) => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
}

/** Statuses that stay until something acts: lists poll while a row is in any
 *  other (`init` is not one: a new guest is `init` until it is scheduled). */
const STABLE = new Set([
  'running', 'ready', 'active', 'available', 'enabled', 'disabled', 'online', 'offline', 'connected', 'disconnected',
  'complete', 'failed', 'idle', 'normal', 'unknown', 'crashed', 'deleted', 'killed', 'ok', 'inactive', '',
])
export function isTransitional(status: unknown): boolean {
  if (typeof status !== 'string') return false
  const s = status.toLowerCase()
  if (STABLE.has(s)) return false
  if (s.endsWith('_fail') || s.endsWith('_failed') || s.endsWith('fail')) return false
  return true
}

export type Tone = 'ok' | 'warn' | 'bad' | 'busy' | 'off'
export function tone(status: unknown): Tone {
  const s = String(status ?? '').toLowerCase()
  if (['running', 'active', 'available', 'enabled', 'online', 'connected', 'complete', 'normal', 'ok', 'idle', 'true', 'allow'].includes(s)) return 'ok'
  if (s.includes('fail') || ['crashed', 'error', 'offline', 'disconnected', 'killed', 'deny', 'false'].includes(s)) return 'bad'
  if (['ready', 'stopped', 'disabled', 'inactive', 'unknown', ''].includes(s)) return 'off'
  if (isTransitional(s)) return 'busy'
  return 'warn'
}
