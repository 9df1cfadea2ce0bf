// What the browser tests share: the environment, Chromium (playwright-core
// drives /usr/bin/chromium; nothing is fetched), numbered steps that stop
// at the first failure with a screenshot and the page's text, pages
// watched for uncaught errors and server errors, screenshots, the login.

import { chromium } from 'playwright-core'
import { mkdirSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export class Failure extends Error {}
export function check(cond, msg) {
  if (!cond) throw new Failure(msg)
}

export const LAPTOP = { width: 1366, height: 800 }
export const T = 30_000

/** `env(k, d)`: the variable, else `d`; without `d` it is required. */
export function envOf(script) {
  return (k, d) => {
    const v = process.env[k]
    if (v !== undefined && v !== '') return v
    if (d === undefined) {
      console.error(`${script}: the environment variable ${k} is required`)
      process.exit(2)
    }
    return d
  }
}

/**
 * Launch Chromium and return the harness.
 * - `url`: the console's origin; `shots`: the screenshot directory or '';
 * - `settle(page)`: what a screenshot waits for;
 * - `onFailure(page)`: more to print when a step fails (optional).
 */
export async function start({ script, url, shots, executable, settle = async () => {}, onFailure = async () => {} }) {
  if (shots) mkdirSync(shots, { recursive: true })
  const work = mkdtempSync(join(tmpdir(), `${script}-`))
  const browser = await chromium.launch({
    executablePath: executable,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  })
  const t0 = Date.now()
  const h = {
    browser,
    work,
    /** The page a failure is reported on. */
    current: null,
    /** Problems seen in the page that fail the step they happen in. */
    problems: [],
    steps: 0,
    t0,

    async step(name, fn) {
      h.steps++
      const started = Date.now()
      h.problems.length = 0
      try {
        await fn()
        check(!h.problems.length, `the page reported: ${h.problems.join(' | ')}`)
      } catch (e) {
        const why = e instanceof Failure ? e.message : (e && e.stack) || String(e)
        console.error(`FAIL ${h.steps}. ${name}\n  ${why.replace(/\n/g, '\n  ')}`)
        const page = h.current
        if (page && !page.isClosed()) {
          console.error(`  at ${page.url()}`)
          const file = join(shots || work, `failure-${h.steps}.png`)
          await page.screenshot({ path: file, fullPage: true }).catch(() => {})
          console.error(`  screenshot: ${file}`)
          const text = await page.locator('body').innerText().catch(() => '')
          console.error(`  page text: ${text.replace(/\s+/g, ' ').slice(0, 1500)}`)
        }
        await onFailure(page).catch(() => {})
        await browser.close().catch(() => {})
        process.exit(1)
      }
      console.log(`ok ${h.steps}. ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`)
    },

    /** A new browser context (its own cookies, or `storageState`) and page, watched for errors. */
    async newPage(viewport = LAPTOP, contextOptions = {}) {
      const ctx = await browser.newContext({ viewport, baseURL: url, ...contextOptions })
      const page = await ctx.newPage()
      page.setDefaultTimeout(T)
      page.on('pageerror', (e) => h.problems.push(`uncaught ${e.name}: ${e.message}`))
      page.on('response', (r) => {
        if (r.url().startsWith(url + '/api/') && r.status() >= 500) {
          h.problems.push(`${r.request().method()} ${r.url().slice(url.length)} answered ${r.status()}`)
        }
      })
      page.on('requestfailed', (r) => {
        const f = r.failure()?.errorText ?? ''
        // Loads cut short (a newer query, a reload) are normal.
        if (!f.includes('ERR_ABORTED')) h.problems.push(`${r.method()} ${r.url()} failed: ${f}`)
      })
      h.current = page
      return page
    },

    async shot(page, name, opts = {}) {
      if (!shots) return
      await settle(page)
      await page.screenshot({ path: join(shots, `${name}.png`), fullPage: false, ...opts })
    },

    /** Log in through the login page an anonymous visit to /servers ends on. */
    async login(page, user, password) {
      await page.goto('/servers')
      await page.waitForURL(/\/login/, { timeout: T }).catch(() => {
        throw new Failure(`an anonymous visit to /servers should end on the login page, it is at ${page.url()}`)
      })
      check(new URL(page.url()).searchParams.get('next') === '/servers', `the login page should carry next=/servers: ${page.url()}`)
      await page.getByLabel('User name').fill(user)
      await page.getByLabel('Password').fill(password)
      await page.getByRole('button', { name: 'Sign in' }).click()
      await page.waitForURL((u) => u.pathname === '/servers', { timeout: T }).catch(async () => {
        const err = await page.locator('#login-error').innerText().catch(() => '')
        throw new Failure(`login as ${user} did not reach /servers (at ${page.url()}); the login page says: ${err || '(nothing)'}`)
      })
      // (Hidden at phone width, so attached is enough.)
      await page.locator('header.top .who').filter({ hasText: user }).waitFor({ state: 'attached' }).catch(() => {
        throw new Failure(`the header should name the user ${user}`)
      })
    },

    async finish() {
      await browser.close()
      console.log(`all ${h.steps} steps passed in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
    },
  }
  return h
}
