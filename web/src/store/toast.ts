import { reactive } from 'vue'
import { errorText } from '../api/client'

export interface Toast {
  id: number
  kind: 'ok' | 'error' | 'info'
  text: string
}

export const toasts = reactive<Toast[]>([])
let next = 1

export function toast(text: string, kind: Toast['kind'] = 'info', ms = 5000): void {
  const id = next++
  toasts.push({ id, kind, text })
  if (ms > 0) setTimeout(() => dismiss(id), kind === 'error' ? ms * 2 : ms)
}

export function toastError(e: unknown, prefix = ''): void {
  toast((prefix ? prefix + ': ' : '') + errorText(e), 'error')
}

export function dismiss(id: number): void {
  const i = toasts.findIndex((t) => t.id === id)
  if (i >= 0) toasts.splice(i, 1)
}
