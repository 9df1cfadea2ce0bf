import { ref } from 'vue'
import { errorText } from '../api/client'

/**
 * One submit at a time: `busy` while `run(fn)` runs, the API's error text
 * in `error` when it throws (then `run` resolves to false).
 */
export function useBusy() {
  const busy = ref(false)
  const error = ref('')
  async function run(fn: () => Promise<unknown>): Promise<boolean> {
    busy.value = true
    error.value = ''
    try {
      await fn()
      return true
    } catch (e) {
      error.value = errorText(e)
      return false
    } finally {
      busy.value = false
    }
  }
  return { busy, error, run }
}
