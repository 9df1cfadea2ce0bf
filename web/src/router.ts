import { createRouter, createWebHistory, type RouteRecordRaw } from 'vue-router'
import { session, loadUser, clearSession, systemCapable } from './store/session'
import { setUnauthorizedHandler } from './api/client'
import { RESOURCES } from './resources'

const plain: RouteRecordRaw[] = Object.keys(RESOURCES).map((name) => ({
  path: `/${name}`,
  name,
  component: () => import('./views/ResourcePage.vue'),
  props: { name },
  meta: { perm: `${name}_list`, admin: !!RESOURCES[name].admin, title: RESOURCES[name].title },
}))

const routes: RouteRecordRaw[] = [
  { path: '/login', name: 'login', component: () => import('./views/Login.vue'), meta: { public: true, title: 'Log in' } },
  { path: '/', name: 'overview', component: () => import('./views/Overview.vue'), meta: { title: 'Overview' } },
  { path: '/servers', name: 'servers', component: () => import('./views/Servers.vue'), meta: { perm: 'servers_list', title: 'Servers' } },
  { path: '/servers/create', name: 'server-create', component: () => import('./views/ServerCreate.vue'), meta: { perm: 'servers_create', title: 'Create server' } },
  { path: '/servers/:id', name: 'server', component: () => import('./views/ServerDetail.vue'), props: true, meta: { perm: 'servers_get', title: 'Server' } },
  { path: '/servers/:id/console', name: 'server-console', component: () => import('./views/ServerConsole.vue'), props: true, meta: { perm: 'servers_get_vnc', title: 'Console' } },
  { path: '/images', name: 'images', component: () => import('./views/Images.vue'), meta: { perm: 'images_list', title: 'Images' } },
  { path: '/hosts', name: 'hosts', component: () => import('./views/Hosts.vue'), meta: { perm: 'hosts_list', title: 'Hosts' } },
  { path: '/secgroups/:id', name: 'secgroup', component: () => import('./views/SecgroupDetail.vue'), props: true, meta: { perm: 'secgroups_get', title: 'Security group' } },
  { path: '/cloudaccounts', name: 'cloudaccounts', component: () => import('./views/CloudAccounts.vue'), meta: { perm: 'cloudaccounts_list', title: 'Cloud accounts' } },
  { path: '/tasks', name: 'tasks', component: () => import('./views/Tasks.vue'), meta: { perm: 'tasks_list', title: 'Tasks' } },
  { path: '/role_assignments', name: 'role_assignments', component: () => import('./views/RoleAssignments.vue'), meta: { perm: 'assignments_list', admin: true, title: 'Role assignments' } },
  ...plain,
  { path: '/:rest(.*)*', name: 'notfound', component: () => import('./views/NotFound.vue'), meta: { public: true, title: 'Not found' } },
]

export const router = createRouter({ history: createWebHistory(), routes })

router.beforeEach(async (to) => {
  if (!session.loaded) await loadUser()
  if (to.meta.public) {
    if (to.name === 'login' && session.user) return { path: (to.query.next as string) || '/' }
    return true
  }
  if (!session.user) return { name: 'login', query: { next: to.fullPath } }
  const perm = to.meta.perm as string | undefined
  if (perm && session.perms[perm] !== true) return { name: 'notfound', params: { rest: to.path.slice(1).split('/') }, query: { denied: '1' } }
  if (to.meta.admin && !systemCapable.value) return { name: 'notfound', params: { rest: to.path.slice(1).split('/') }, query: { denied: '1' } }
  return true
})

router.afterEach((to) => {
  document.title = `${(to.meta.title as string) || 'Console'} · Cloudpods`
})

setUnauthorizedHandler(() => {
  if (!session.user && router.currentRoute.value.name === 'login') return
  clearSession()
  const cur = router.currentRoute.value
  if (cur.name !== 'login') router.replace({ name: 'login', query: { next: cur.fullPath } })
})
