// Every permission key the UI uses: `key → [service, resource, action,
// extra?]`. The scope is put in front when asking the gateway.

const compute = ['servers', 'hosts', 'networks', 'wires', 'zones', 'vpcs', 'eips', 'secgroups', 'secgrouprules', 'disks', 'snapshots', 'cloudaccounts', 'serverskus', 'tasks'] as const
const identity = ['domains', 'projects', 'users', 'groups', 'roles', 'policies'] as const

const keys: Record<string, string[]> = {}
for (const r of compute) {
  keys[`${r}_list`] = ['compute', r, 'list']
  keys[`${r}_get`] = ['compute', r, 'get']
  keys[`${r}_create`] = ['compute', r, 'create']
  keys[`${r}_delete`] = ['compute', r, 'delete']
}
for (const r of identity) {
  keys[`${r}_list`] = ['identity', r, 'list']
  keys[`${r}_create`] = ['identity', r, 'create']
  keys[`${r}_delete`] = ['identity', r, 'delete']
}
keys.images_list = ['image', 'images', 'list']
keys.images_create = ['image', 'images', 'create']
keys.images_delete = ['image', 'images', 'delete']
keys.assignments_list = ['identity', 'assignments', 'list']
keys.assignments_create = ['identity', 'assignments', 'create']
keys.assignments_delete = ['identity', 'assignments', 'delete']
keys.quotas_get = ['compute', 'quotas', 'get']
keys.usages_get = ['compute', 'usages', 'get']
for (const a of ['start', 'stop', 'restart', 'change-config', 'snapshot', 'disk-snapshot', 'set-password', 'syncstatus']) {
  keys[`servers_perform_${a.replace(/-/g, '_')}`] = ['compute', 'servers', 'perform', a]
}
keys.servers_get_vnc = ['compute', 'servers', 'get', 'vnc']
keys.servers_get_tasks = ['compute', 'servers', 'get', 'tasks']
keys.cloudaccounts_perform_sync = ['compute', 'cloudaccounts', 'perform', 'sync']

export const PERMISSION_KEYS = keys
export type PermKey = string
