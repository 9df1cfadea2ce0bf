// The one API client: every call to the gateway goes through here.
// Same-origin fetch with the session cookie (HttpOnly; never read here),
// `X-Requested-With` on every call, errors turned into ApiError with the
// gateway's `details`, and a 401 sending the user to the login page.

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json }
export type Obj = Record<string, any>

export interface ListResult<T = Obj> {
  data: T[]
  total: number
  limit: number
  offset: number
}

export interface BatchItem {
  status: number
  id: string
  data: Obj
}

export class ApiError extends Error {
  status: number
  code: number
  klass: string
  details: string
  constructor(status: number, body: Obj | null, fallback: string) {
    const details =
      (body && typeof body.details === 'string' && body.details) ||
      (body && typeof body.error === 'string' && body.error) ||
      (body && body.error && typeof body.error.message === 'string' && body.error.message) ||
      fallback
    super(details)
    this.status = status
    this.code = (body && typeof body.code === 'number' && body.code) || status
    this.klass = (body && typeof body.class === 'string' && body.class) || ''
    this.details = details
  }
}

export function errorText(e: unknown): string {
  if (e instanceof ApiError) {
    return e.klass ? `${e.details} (${e.klass}, ${e.status})` : `${e.details} (HTTP ${e.status})`
  }
  if (e instanceof Error) return e.message
  return String(e)
}

type UnauthorizedHandler = () => void
let onUnauthorized: UnauthorizedHandler = () => {}
/** Set by the router: what to do when the session is gone. */
export function setUnauthorizedHandler(f: UnauthorizedHandler): void {
  onUnauthorized = f
}

function isLogout(status: number, url: string, body: Obj | null): boolean {
  if (status !== 401) {
    return !!(body && typeof body.class === 'string' && body.class.includes('InvalidCredentialError'))
  }
  // A failed login is an inline error on the login page, not a redirect.
  return !url.startsWith('/api/v1/auth/login')
}

export type Query = Record<string, string | number | boolean | undefined | null | (string | number)[]>

/** Arrays become repeated keys (`id=a&id=b`), as the gateway reads them. */
export function qs(q?: Query): string {
  if (!q) return ''
  const p = new URLSearchParams()
  for (const [k, v] of Object.entries(q)) {
    if (v === undefined || v === null || v === '') continue
    if (Array.isArray(v)) v.forEach((x) => p.append(k, String(x)))
    else p.append(k, String(v))
  }
  const s = p.toString()
  return s ? `?${s}` : ''
}

export interface RequestOptions {
  query?: Query
  body?: unknown
  headers?: Record<string, string>
  signal?: AbortSignal
  /** Do not redirect to the login page on 401 (the session probe). */
  quiet401?: boolean
}

export interface RawResponse {
  status: number
  body: any
}

export async function request(method: string, path: string, opts: RequestOptions = {}): Promise<RawResponse> {
  const url = path + qs(opts.query)
  const headers: Record<string, string> = {
    'X-Requested-With': 'XMLHttpRequest',
    Accept: 'application/json',
    ...opts.headers,
  }
  let body: BodyInit | undefined
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json'
    body = JSON.stringify(opts.body)
  }
  let resp: Response
  try {
    resp = await fetch(url, { method, headers, body, credentials: 'same-origin', signal: opts.signal })
  } catch (e) {
    if (e instanceof DOMException && e.name === 'AbortError') throw e
    throw new ApiError(0, null, `cannot reach the API gateway (${(e as Error).message})`)
  }
  const text = await resp.text()
  let parsed: any = null
  if (text) {
    try {
      parsed = JSON.parse(text)
    } catch {
      parsed = null
    }
  }
  if (!resp.ok) {
    const err = new ApiError(resp.status, parsed && typeof parsed === 'object' ? parsed : null, text.slice(0, 300) || resp.statusText || `HTTP ${resp.status}`)
    if (!opts.quiet401 && isLogout(resp.status, path, parsed)) onUnauthorized()
    throw err
  }
  return { status: resp.status, body: parsed }
}

function normList<T>(body: any, keys: string[] = []): ListResult<T> {
  let data: T[] = []
  if (body && Array.isArray(body.data)) data = body.data
  else {
    for (const k of keys) {
      if (body && Array.isArray(body[k])) {
        data = body[k]
        break
      }
    }
    if (!data.length && body && typeof body === 'object') {
      // Any single array member (e.g. `{"tasks":[...]}`).
      const arr = Object.values(body).find((v) => Array.isArray(v))
      if (arr) data = arr as T[]
    }
  }
  return {
    data,
    total: typeof body?.total === 'number' ? body.total : data.length,
    limit: typeof body?.limit === 'number' ? body.limit : 0,
    offset: typeof body?.offset === 'number' ? body.offset : 0,
  }
}

/** Strip a single-key envelope (`{"server": {...}}`) if one slipped through. */
function bare(body: any): Obj {
  if (body && typeof body === 'object' && !Array.isArray(body)) {
    const keys = Object.keys(body)
    if (keys.length === 1 && body[keys[0]] && typeof body[keys[0]] === 'object' && !Array.isArray(body[keys[0]]) && !('id' in body)) {
      return body[keys[0]]
    }
  }
  return body ?? {}
}

/** `/api/v2` for compute, `/api/v1` for identity and images. */
const V1 = new Set(['domains', 'projects', 'users', 'groups', 'roles', 'policies', 'role_assignments', 'images', 'services', 'endpoints'])
export function base(resource: string): string {
  return V1.has(resource) ? `/api/v1/${resource}` : `/api/v2/${resource}`
}

export const api = {
  async list<T = Obj>(resource: string, query?: Query, signal?: AbortSignal): Promise<ListResult<T>> {
    const r = await request('GET', base(resource), { query, signal })
    return normList<T>(r.body, [resource])
  },
  async get<T = Obj>(resource: string, id: string, query?: Query): Promise<T> {
    const r = await request('GET', `${base(resource)}/${encodeURIComponent(id)}`, { query })
    return bare(r.body) as T
  },
  async spec(resource: string, id: string, spec: string, query?: Query): Promise<any> {
    const r = await request('GET', `${base(resource)}/${encodeURIComponent(id)}/${spec}`, { query })
    return r.body
  },
  async specList<T = Obj>(resource: string, id: string, spec: string, query?: Query): Promise<ListResult<T>> {
    const r = await request('GET', `${base(resource)}/${encodeURIComponent(id)}/${spec}`, { query })
    return normList<T>(r.body, [spec])
  },
  async create<T = Obj>(resource: string, body: Obj): Promise<T | BatchItem[]> {
    const r = await request('POST', base(resource), { body })
    if (r.status === 207) return normList<BatchItem>(r.body).data
    return bare(r.body) as T
  },
  async update<T = Obj>(resource: string, id: string, body: Obj): Promise<T> {
    const r = await request('PUT', `${base(resource)}/${encodeURIComponent(id)}`, { body })
    return bare(r.body) as T
  },
  async perform<T = Obj>(resource: string, id: string, action: string, body: Obj = {}): Promise<T> {
    const r = await request('POST', `${base(resource)}/${encodeURIComponent(id)}/${action}`, { body })
    return bare(r.body) as T
  },
  async remove(resource: string, id: string, query?: Query): Promise<Obj> {
    const r = await request('DELETE', `${base(resource)}/${encodeURIComponent(id)}`, { query })
    return bare(r.body)
  },
  /** `POST /api/v2/<res>/<action>?id=a&id=b` → 207 per-item results. */
  async batchPerform(resource: string, action: string, ids: string[], body: Obj = {}): Promise<BatchItem[]> {
    const r = await request('POST', `${base(resource)}/${action}`, { query: { id: ids }, body })
    return batchItems(r, ids)
  },
  /** `DELETE /api/v2/<res>?id=a&id=b` → 207 per-item results. */
  async batchDelete(resource: string, ids: string[]): Promise<BatchItem[]> {
    const r = await request('DELETE', base(resource), { query: { id: ids } })
    return batchItems(r, ids)
  },
  raw: request,
}

function batchItems(r: RawResponse, ids: string[]): BatchItem[] {
  if (r.body && Array.isArray(r.body.data) && r.body.data.every((x: any) => x && typeof x.status === 'number')) {
    return r.body.data as BatchItem[]
  }
  // A single id answered as a plain 200.
  return ids.map((id) => ({ status: r.status, id, data: r.body ?? {} }))
}

export interface UploadHandle {
  promise: Promise<Obj>
  abort: () => void
}

/**
 * Image upload straight to glance through the gateway's backend proxy:
 * the file is the body, the properties are `x-image-meta-*` headers.
 * XMLHttpRequest for upload progress.
 */
export function uploadImage(file: File, meta: Record<string, string>, onProgress: (loaded: number, total: number) => void): UploadHandle {
  const xhr = new XMLHttpRequest()
  const promise = new Promise<Obj>((resolve, reject) => {
    xhr.open('POST', '/api/s/image/images')
    xhr.withCredentials = true
    xhr.setRequestHeader('X-Requested-With', 'XMLHttpRequest')
    xhr.setRequestHeader('Content-Type', 'application/octet-stream')
    xhr.setRequestHeader('Accept', 'application/json')
    for (const [k, v] of Object.entries(meta)) {
      if (v !== '') xhr.setRequestHeader(`x-image-meta-${k}`, encodeURIComponent(v))
    }
    xhr.upload.onprogress = (ev) => onProgress(ev.loaded, ev.lengthComputable ? ev.total : file.size)
    xhr.onerror = () => reject(new ApiError(0, null, 'upload failed: the connection was lost'))
    xhr.onabort = () => reject(new ApiError(0, null, 'upload cancelled'))
    xhr.onload = () => {
      let body: any = null
      try {
        body = xhr.responseText ? JSON.parse(xhr.responseText) : null
      } catch {
        body = null
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(bare(body))
      else {
        if (isLogout(xhr.status, '/api/s/image', body)) onUnauthorized()
        reject(new ApiError(xhr.status, body, xhr.responseText.slice(0, 300) || `HTTP ${xhr.status}`))
      }
    }
    xhr.send(file)
  })
  return { promise, abort: () => xhr.abort() }
}
