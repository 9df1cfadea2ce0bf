import type { Query } from './api/client'

export interface Column<R = any> {
  key: string
  label: string
  sortable?: boolean
  /** Text of the cell; a `#cell-<key>` slot overrides it. */
  text?: (row: R) => string
  /** 'md' hides the column on phones. */
  hideOn?: 'sm' | 'md'
}

export interface PresetFilter {
  key: string
  label: string
  options: { value: string; label: string }[]
}

export interface Field {
  key: string
  label: string
  type?: 'text' | 'number' | 'password' | 'select' | 'checkbox' | 'textarea'
  required?: boolean
  options?: { value: string; label: string }[]
  optionsFrom?: { resource: string; query?: Query; label?: string; value?: string }
  default?: string | number | boolean
  placeholder?: string
  help?: string
}

export interface ListHandle {
  reload: () => void
}
