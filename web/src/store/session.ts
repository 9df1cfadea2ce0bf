// Who is logged in, which project, admin view or not, and what the user's
// policies allow (asked once per scope after login, cached).

import { reactive, computed } from 'vue'
import { request, type Obj } from '../api/client'
import { PERMISSION_KEYS, type PermKey } from '../permissions'

export interface ProjectRef {
  id: string
  name: string
  domain?: string
  domain_id?: string
  roles?: { id: string; name: string }[]
  system_capable?: boolean
  domain_capable?: boolean
  project_capable?: boolean
}

export interface UserInfo {
  id: string
  name: string
  displayname?: string
  domain?: { id: string; name: string }
  projectId?: string
  projectName?: string
  projectDomain?: string
  projectDomainId?: string
  roles?: string[]
  projects?: ProjectRef[]
  system_capable?: boolean
  domain_capable?: boolean
  [k: string]: unknown
}

type Scope = 'system' | 'project'

const ADMIN_VIEW_KEY = 'cloudpods.adminView'

export const session = reactive({
  user: null as UserInfo | null,
  loaded: false,
  adminView: localStorage.getItem(ADMIN_VIEW_KEY) === '1',
  perms: {} as Record<string, boolean>,
  permScope: '' as Scope | '',
})

/** The current project's entry in `projects`, when listed. */
export const currentProject = computed<ProjectRef | undefined>(() =>
  session.user?.projects?.find((p) => p.id === session.user?.projectId),
)

export const systemCapable = computed<boolean>(() => {
  const u = session.user
  if (!u) return false
  if (u.system_capable) return true
  const p = currentProject.value
  if (p?.system_capable) return true
  return false
})

/** The scope list queries and permission checks use. */
export const scope = computed<Scope>(() => (systemCapable.value && session.adminView ? 'system' : 'project'))

export function setAdminView(on: boolean): Promise<void> {
  session.adminView = on
  localStorage.setItem(ADMIN_VIEW_KEY, on ? '1' : '0')
  return loadPermissions()
}

export function can(key: PermKey): boolean {
  return session.perms[key] === true
}

export async function loadUser(): Promise<UserInfo | null> {
  try {
    const r = await request('GET', '/api/v1/auth/user', { quiet401: true })
    const u = (r.body && (r.body.data ?? r.body)) as UserInfo
    session.user = u && u.id ? u : null
  } catch {
    session.user = null
  }
  session.loaded = true
  if (session.user) await loadPermissions()
  return session.user
}

/** `POST /api/v1/auth/permissions` for every key the UI uses, in one call. */
export async function loadPermissions(): Promise<void> {
  const sc = scope.value
  const body: Record<string, string[]> = {}
  for (const [key, spec] of Object.entries(PERMISSION_KEYS)) body[key] = [sc, ...spec]
  const perms: Record<string, boolean> = {}
  try {
    const r = await request('POST', '/api/v1/auth/permissions', { body })
    const ans = (r.body && (r.body.data ?? r.body)) as Obj
    for (const key of Object.keys(body)) {
      const v = ans?.[key]
      perms[key] = Array.isArray(v) ? v[v.length - 1] === 'allow' : v === 'allow'
    }
  } catch {
    // Nothing is shown that was not allowed: deny all on failure.
    for (const key of Object.keys(body)) perms[key] = false
  }
  session.perms = perms
  session.permScope = sc
}

export async function login(input: { username: string; password: string; domain: string; region?: string }): Promise<void> {
  await request('POST', '/api/v1/auth/login', { body: input, quiet401: true })
  await loadUser()
}

export async function switchProject(projectId: string): Promise<void> {
  await request('POST', '/api/v1/auth/login', { body: { tenantId: projectId } })
  await loadUser()
}

export async function logout(): Promise<void> {
  try {
    await request('POST', '/api/v1/auth/logout', { quiet401: true })
  } finally {
    clearSession()
  }
}

export function clearSession(): void {
  session.user = null
  session.perms = {}
  session.permScope = ''
}
