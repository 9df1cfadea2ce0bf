// Config of the plain resource pages: columns, filters, create form.
// The generic ResourcePage renders these with ListView + FormDialog.

import type { Column, PresetFilter, Field } from './types'
import type { Obj } from './api/client'
import { mb, time } from './format'

export interface ResourceConfig {
  resource: string
  title: string
  /** Identity pages show only in admin view. */
  admin?: boolean
  columns: Column[]
  presets?: PresetFilter[]
  filterFields?: string[]
  create?: { fields: Field[]; toBody?: (v: Obj) => Obj }
  deletable?: boolean
  /** Per-row link (the name cell). */
  link?: (row: Obj) => string
  scoped?: boolean
  details?: boolean
}

const name: Column = { key: 'name', label: 'Name', sortable: true }
const status: Column = { key: 'status', label: 'Status', sortable: true }
const created: Column = { key: 'created_at', label: 'Created', sortable: true, text: (r) => time(r.created_at), hideOn: 'md' }
const enabled: Column = { key: 'enabled', label: 'Enabled', text: (r) => (r.enabled === false || r.enabled === 0 ? 'no' : 'yes') }
const project: Column = { key: 'tenant', label: 'Project', sortable: true, text: (r) => r.tenant ?? r.project ?? '', hideOn: 'md' }
const domain: Column = { key: 'project_domain', label: 'Domain', text: (r) => r.project_domain ?? r.domain ?? r.domain_id ?? '', hideOn: 'md' }
const desc: Field = { key: 'description', label: 'Description' }

export const RESOURCES: Record<string, ResourceConfig> = {
  networks: {
    resource: 'networks',
    title: 'Networks',
    columns: [
      name,
      status,
      { key: 'guest_ip_start', label: 'IP range', text: (r) => `${r.guest_ip_start ?? ''} – ${r.guest_ip_end ?? ''}/${r.guest_ip_mask ?? ''}` },
      { key: 'guest_gateway', label: 'Gateway', hideOn: 'md' },
      { key: 'wire', label: 'Wire', text: (r) => r.wire ?? r.wire_id ?? '' },
      { key: 'vlan_id', label: 'VLAN', hideOn: 'md' },
      { key: 'ports_used', label: 'Used / ports', text: (r) => `${r.ports_used ?? 0} / ${r.ports ?? ''}`, hideOn: 'md' },
      project,
    ],
    filterFields: ['name', 'guest_ip_start', 'wire_id'],
    create: {
      fields: [
        { key: 'name', label: 'Name', required: true },
        { key: 'wire_id', label: 'Wire', type: 'select', required: true, optionsFrom: { resource: 'wires' } },
        { key: 'guest_ip_start', label: 'First address', required: true, placeholder: '192.168.1.10' },
        { key: 'guest_ip_end', label: 'Last address', required: true, placeholder: '192.168.1.200' },
        { key: 'guest_ip_mask', label: 'Mask length', type: 'number', required: true, default: 24 },
        { key: 'guest_gateway', label: 'Gateway', placeholder: '192.168.1.1' },
        { key: 'guest_dns', label: 'DNS servers', placeholder: '8.8.8.8' },
        { key: 'vlan_id', label: 'VLAN id', type: 'number', default: 1 },
        { key: 'server_type', label: 'Type', type: 'select', options: [{ value: 'guest', label: 'guest' }, { value: 'baremetal', label: 'baremetal' }, { value: 'eip', label: 'eip' }] },
      ],
    },
    deletable: true,
  },
  wires: {
    resource: 'wires',
    title: 'Wires',
    columns: [name, status, { key: 'bandwidth', label: 'Bandwidth (Mbps)' }, { key: 'zone', label: 'Zone', text: (r) => r.zone ?? r.zone_id ?? '' }, { key: 'vpc', label: 'VPC', text: (r) => r.vpc ?? r.vpc_id ?? '' }, { key: 'networks', label: 'Networks', hideOn: 'md' }, created],
    create: {
      fields: [
        { key: 'name', label: 'Name', required: true },
        { key: 'zone_id', label: 'Zone', type: 'select', required: true, optionsFrom: { resource: 'zones' } },
        { key: 'vpc_id', label: 'VPC', type: 'select', optionsFrom: { resource: 'vpcs' } },
        { key: 'bandwidth', label: 'Bandwidth (Mbps)', type: 'number', default: 1000 },
        { key: 'mtu', label: 'MTU', type: 'number', default: 1500 },
        desc,
      ],
    },
    deletable: true,
  },
  zones: {
    resource: 'zones',
    title: 'Zones',
    columns: [name, status, { key: 'cloudregion', label: 'Region', text: (r) => r.cloudregion ?? r.cloudregion_id ?? '' }, { key: 'hosts', label: 'Hosts' }, { key: 'wires', label: 'Wires', hideOn: 'md' }, created],
    create: { fields: [{ key: 'name', label: 'Name', required: true }, { key: 'cloudregion_id', label: 'Region', type: 'select', optionsFrom: { resource: 'cloudregions' } }, desc] },
    deletable: true,
  },
  vpcs: {
    resource: 'vpcs',
    title: 'VPCs',
    columns: [name, status, { key: 'cidr_block', label: 'CIDR' }, { key: 'cloudregion', label: 'Region', text: (r) => r.cloudregion ?? r.cloudregion_id ?? '' }, { key: 'wire_count', label: 'Wires', hideOn: 'md' }, { key: 'network_count', label: 'Networks', hideOn: 'md' }, created],
    create: {
      fields: [
        { key: 'name', label: 'Name', required: true },
        { key: 'cidr_block', label: 'CIDR', required: true, placeholder: '10.0.0.0/16' },
        { key: 'cloudregion_id', label: 'Region', type: 'select', optionsFrom: { resource: 'cloudregions' } },
        desc,
      ],
    },
    deletable: true,
  },
  eips: {
    resource: 'eips',
    title: 'Elastic IPs',
    columns: [name, status, { key: 'ip_addr', label: 'Address', sortable: true }, { key: 'bandwidth', label: 'Bandwidth (Mbps)', hideOn: 'md' }, { key: 'associate_name', label: 'Bound to', text: (r) => (r.associate_name ?? r.associate_id ?? '') + (r.associate_type ? ` (${r.associate_type})` : '') }, { key: 'mode', label: 'Mode', hideOn: 'md' }, project],
    presets: [{ key: 'usable', label: 'Usable', options: [{ value: 'true', label: 'unbound only' }] }],
    create: {
      fields: [
        { key: 'name', label: 'Name', required: true },
        { key: 'network_id', label: 'Network', type: 'select', optionsFrom: { resource: 'networks', query: { server_type: 'eip' } } },
        { key: 'bandwidth', label: 'Bandwidth (Mbps)', type: 'number', default: 100 },
        { key: 'ip_addr', label: 'Address (optional)' },
      ],
    },
    deletable: true,
  },
  secgroups: {
    resource: 'secgroups',
    title: 'Security groups',
    columns: [name, status, { key: 'rules', label: 'Rules', text: (r) => String(r.rules ?? r.rule_count ?? (Array.isArray(r.in_rules) ? r.in_rules.length + (r.out_rules?.length ?? 0) : '')) }, { key: 'guest_cnt', label: 'Servers', text: (r) => String(r.guest_cnt ?? r.guests ?? '') }, project, created],
    create: { fields: [{ key: 'name', label: 'Name', required: true }, desc] },
    deletable: true,
    link: (r) => `/secgroups/${r.id}`,
  },
  disks: {
    resource: 'disks',
    title: 'Disks',
    columns: [name, status, { key: 'disk_size', label: 'Size', sortable: true, text: (r) => mb(r.disk_size) }, { key: 'disk_type', label: 'Type' }, { key: 'guest', label: 'Server', text: (r) => r.guest ?? '' }, { key: 'storage', label: 'Storage', hideOn: 'md' }, project, created],
    deletable: true,
  },
  snapshots: {
    resource: 'snapshots',
    title: 'Snapshots',
    columns: [name, status, { key: 'size', label: 'Size', text: (r) => mb(r.size) }, { key: 'disk_name', label: 'Disk', text: (r) => r.disk_name ?? r.disk_id ?? '' }, { key: 'guest', label: 'Server', text: (r) => r.guest ?? r.guest_id ?? '', hideOn: 'md' }, project, created],
    deletable: true,
  },
  serverskus: {
    resource: 'serverskus',
    title: 'Flavors (SKUs)',
    columns: [name, { key: 'cpu_core_count', label: 'vCPU', sortable: true }, { key: 'memory_size_mb', label: 'Memory', sortable: true, text: (r) => mb(r.memory_size_mb) }, { key: 'instance_type_family', label: 'Family' }, { key: 'provider', label: 'Provider', hideOn: 'md' }, enabled],
    create: {
      fields: [
        { key: 'name', label: 'Name', required: true, placeholder: 'ecs.g1.c2m4' },
        { key: 'cpu_core_count', label: 'vCPU', type: 'number', required: true, default: 2 },
        { key: 'memory_size_mb', label: 'Memory (MB)', type: 'number', required: true, default: 4096 },
        { key: 'instance_type_family', label: 'Family', default: 'g1' },
      ],
    },
    deletable: true,
    scoped: false,
  },
  domains: {
    resource: 'domains',
    title: 'Domains',
    admin: true,
    columns: [name, enabled, { key: 'description', label: 'Description', hideOn: 'md' }, created],
    create: { fields: [{ key: 'name', label: 'Name', required: true }, desc] },
    deletable: true,
  },
  projects: {
    resource: 'projects',
    title: 'Projects',
    admin: true,
    columns: [name, domain, enabled, { key: 'description', label: 'Description', hideOn: 'md' }, created],
    create: { fields: [{ key: 'name', label: 'Name', required: true }, { key: 'domain_id', label: 'Domain', type: 'select', optionsFrom: { resource: 'domains' } }, desc] },
    deletable: true,
  },
  users: {
    resource: 'users',
    title: 'Users',
    admin: true,
    columns: [name, { key: 'displayname', label: 'Display name' }, domain, enabled, { key: 'email', label: 'E-mail', hideOn: 'md' }, created],
    create: {
      fields: [
        { key: 'name', label: 'Name', required: true },
        { key: 'displayname', label: 'Display name' },
        { key: 'password', label: 'Password', type: 'password' },
        { key: 'email', label: 'E-mail' },
        { key: 'domain_id', label: 'Domain', type: 'select', optionsFrom: { resource: 'domains' } },
        desc,
      ],
    },
    deletable: true,
  },
  groups: {
    resource: 'groups',
    title: 'Groups',
    admin: true,
    columns: [name, domain, { key: 'description', label: 'Description', hideOn: 'md' }, created],
    create: { fields: [{ key: 'name', label: 'Name', required: true }, { key: 'domain_id', label: 'Domain', type: 'select', optionsFrom: { resource: 'domains' } }, desc] },
    deletable: true,
  },
  roles: {
    resource: 'roles',
    title: 'Roles',
    admin: true,
    columns: [name, domain, { key: 'description', label: 'Description', hideOn: 'md' }, created],
    create: { fields: [{ key: 'name', label: 'Name', required: true }, { key: 'domain_id', label: 'Domain', type: 'select', optionsFrom: { resource: 'domains' } }, desc] },
    deletable: true,
  },
  policies: {
    resource: 'policies',
    title: 'Policies',
    admin: true,
    columns: [name, { key: 'scope', label: 'Scope' }, enabled, { key: 'is_system', label: 'System', text: (r) => (r.is_system ? 'yes' : '') }, domain, created],
    create: {
      fields: [
        { key: 'name', label: 'Name', required: true },
        { key: 'scope', label: 'Scope', type: 'select', required: true, options: [{ value: 'project', label: 'project' }, { value: 'domain', label: 'domain' }, { value: 'system', label: 'system' }] },
        { key: 'blob', label: 'Policy (JSON)', type: 'textarea', required: true, placeholder: '{"compute":{"servers":{"list":"allow"}}}' },
        desc,
      ],
      toBody: (v) => {
        let blob: unknown = v.blob
        try {
          blob = JSON.parse(String(v.blob))
        } catch {
          throw new Error('the policy must be valid JSON')
        }
        return { ...v, blob }
      },
    },
    deletable: true,
  },
}
