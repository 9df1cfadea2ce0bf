// Server actions shared by the list and the detail page.
import type { Field } from '../types'
import type { Obj } from '../api/client'
import { can } from '../store/session'

export interface ServerAction {
  id: string
  label: string
  perm: string
  /** Allowed in these statuses (empty: any). */
  when?: string[]
  danger?: boolean
  /** A form first; otherwise a confirm dialog. */
  fields?: (s: Obj) => Field[]
  toBody?: (v: Obj, s: Obj) => Obj
}

export const SERVER_ACTIONS: ServerAction[] = [
  { id: 'start', label: 'Start', perm: 'servers_perform_start', when: ['ready', 'stop_fail', 'start_fail'] },
  { id: 'stop', label: 'Stop', perm: 'servers_perform_stop', when: ['running', 'stop_fail', 'unknown'] },
  { id: 'restart', label: 'Restart', perm: 'servers_perform_restart', when: ['running', 'ready', 'stop_fail', 'start_fail'] },
  {
    id: 'change-config',
    label: 'Change config',
    perm: 'servers_perform_change_config',
    when: ['ready', 'running', 'change_flavor_fail'],
    fields: (s) => [
      { key: 'vcpu_count', label: 'vCPU', type: 'number', required: true, default: s.vcpu_count ?? 1 },
      { key: 'vmem_size', label: 'Memory (MB)', type: 'number', required: true, default: s.vmem_size ?? 1024 },
    ],
  },
  {
    id: 'snapshot',
    label: 'Snapshot',
    perm: 'servers_perform_snapshot',
    when: ['ready', 'running', 'snapshot_failed'],
    fields: (s) => [
      { key: 'name', label: 'Snapshot name', required: true, default: `${s.name ?? 'server'}-snap` },
      {
        key: 'disk_id',
        label: 'Disk',
        type: 'select',
        options: (Array.isArray(s.disks_info) ? s.disks_info : []).map((d: Obj) => ({ value: String(d.id), label: `${d.name || d.id} (${d.index ?? ''})` })),
        help: 'Empty: the system disk.',
      },
    ],
  },
  {
    id: 'set-password',
    label: 'Set password',
    perm: 'servers_perform_set_password',
    when: ['ready', 'running', 'deploy_fail'],
    fields: () => [{ key: 'password', label: 'New password', type: 'password', required: true }],
  },
  { id: 'delete', label: 'Delete', perm: 'servers_delete', danger: true },
]

export function allowedActions(): ServerAction[] {
  return SERVER_ACTIONS.filter((a) => can(a.perm))
}

export function enabledFor(a: ServerAction, s: Obj): boolean {
  return !a.when || a.when.includes(String(s.status))
}
