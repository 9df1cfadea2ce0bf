// Browser test of the in-browser VM consoles (VNC and serial) against a
// running platform, with a real Chromium (playwright-core drives
// /usr/bin/chromium; nothing is fetched).
//
// Inputs (environment):
//   CONSOLE_URL      the gateway, e.g. http://127.0.0.1:30300 (required)
//   ADMIN_USER       default sysadmin
//   ADMIN_PASSWORD   required
//   SERVER_ID        a running server with a VNC and a serial console whose
//                    guest prints CLOUDPODS-… lines and answers a line typed
//                    on its console with CLOUDPODS-ECHO=<line> (required)
//   SCREENSHOT_DIR   where the page screenshots go (default: none taken)
//   CHROMIUM         the browser (default /usr/bin/chromium)
//
// Prints each step as it passes; exits 1 with a message at the first failure.

import { Failure, check, envOf, T, start } from './harness.mjs'

const env = envOf('vm-console.mjs')
const URL0 = env('CONSOLE_URL').replace(/\/+$/, '')
const USER = env('ADMIN_USER', 'sysadmin')
const PASSWORD = env('ADMIN_PASSWORD')
const SERVER_ID = env('SERVER_ID')
const SHOTS = env('SCREENSHOT_DIR', '')
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium')
const SLOW = 60_000
const MARK = 'CLOUDPODS-'
const TYPED = 'hello-console'
const ECHO = `CLOUDPODS-ECHO=${TYPED}`
const consoleUrl = (protocol) => `/servers/${encodeURIComponent(SERVER_ID)}/console?protocol=${protocol}`

/** What the page's WebSockets did (printed on a failure). */
const socketLog = []
const h = await start({
  script: 'vm-console-e2e',
  url: URL0,
  shots: SHOTS,
  executable: CHROMIUM,
  // (No networkidle wait: the console's WebSocket stays open.)
  settle: (page) => page.waitForTimeout(300),
  onFailure: async (page) => {
    const term = page && !page.isClosed() ? await terminalText(page).catch(() => '') : ''
    if (term) console.error(`  terminal text (last 1500 chars): ${JSON.stringify(term.slice(-1500))}`)
    if (socketLog.length) console.error(`  websockets:\n    ${socketLog.slice(-20).join('\n    ')}`)
  },
})
const { step, shot, login } = h

/** A page whose WebSockets are logged. */
async function newPage() {
  const page = await h.newPage()
  page.on('websocket', (ws) => {
    const u = ws.url().replace(/access_token=[^&]+/, 'access_token=…')
    const at = () => `${((Date.now() - h.t0) / 1000).toFixed(1)} s`
    let rx = 0
    let tx = 0
    socketLog.push(`${at()} open ${u}`)
    ws.on('framereceived', () => rx++)
    ws.on('framesent', () => tx++)
    ws.on('socketerror', (e) => socketLog.push(`${at()} error ${u}: ${e}`))
    ws.on('close', () => socketLog.push(`${at()} closed ${u} (${rx} frames in, ${tx} out)`))
  })
  return page
}

/** The text of the page's error box (role=alert), or ''. */
async function alertText(page) {
  const a = page.locator('.console-page [role="alert"]')
  return (await a.count()) ? (await a.first().innerText()).trim() : ''
}

/**
 * Wait until the viewer `sel` is connected; fail at once, with the page's
 * error, if it ends in error or disconnected instead.
 */
async function waitConnected(page, sel, what, timeout = SLOW) {
  await page.locator(sel).waitFor({ state: 'attached', timeout: T }).catch(() => {
    throw new Failure(`the console page should have the ${what} viewer ${sel}`)
  })
  const h = await page
    .waitForFunction(
      (s) => {
        const st = document.querySelector(s)?.getAttribute('data-state')
        return st === 'connected' || st === 'error' || st === 'disconnected' ? st : false
      },
      sel,
      { timeout },
    )
    .catch(async () => {
      const st = await page.locator(sel).getAttribute('data-state').catch(() => null)
      throw new Failure(`the ${what} console did not connect in ${timeout / 1000} s (data-state=${st}; status: ${await statusText(page)})`)
    })
  const st = await h.jsonValue()
  if (st !== 'connected') {
    throw new Failure(`the ${what} console ended in ${st} instead of connected: ${(await alertText(page)) || (await statusText(page))}`)
  }
}

async function statusText(page) {
  return (await page.locator('.console-status').innerText().catch(() => '')).trim()
}

/** The serial terminal's text: its whole buffer through the page's hook, else the rows in the DOM. */
function terminalText(page) {
  return page.evaluate(() => {
    const el = document.querySelector('#serial-terminal')
    if (!el) return ''
    if (typeof el.terminalText === 'function') return el.terminalText()
    const rows = el.querySelector('.xterm-rows')
    return (rows || el).innerText || ''
  })
}

async function waitTerminalText(page, needle, timeout) {
  const until = Date.now() + timeout
  let last = ''
  while (Date.now() < until) {
    last = await terminalText(page)
    if (last.includes(needle)) return last
    const st = await page.locator('#serial-terminal').getAttribute('data-state').catch(() => null)
    if (st === 'error' || st === 'disconnected') {
      throw new Failure(`the serial console went ${st} while waiting for ${JSON.stringify(needle)}: ${(await alertText(page)) || (await statusText(page))}`)
    }
    await page.waitForTimeout(250)
  }
  throw new Failure(`the serial terminal did not show ${JSON.stringify(needle)} in ${timeout / 1000} s; it ends with: ${JSON.stringify(last.slice(-600))}`)
}

/** Canvas size and how many of its pixels are not (nearly) black. */
function canvasPixels(page) {
  return page.evaluate(() => {
    const c = document.querySelector('#vnc-screen canvas')
    if (!c) return { found: false, w: 0, h: 0, lit: 0 }
    if (!c.width || !c.height) return { found: true, w: c.width, h: c.height, lit: 0 }
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data
    let lit = 0
    for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 30) lit++
    return { found: true, w: c.width, h: c.height, lit }
  })
}

// --- the steps --------------------------------------------------------------

console.log(`vm consoles of server ${SERVER_ID} on ${URL0}, ${CHROMIUM} ${h.browser.version()}`)

let page
await step(`${USER} logs in`, async () => {
  page = await newPage()
  await login(page, USER, PASSWORD)
})

await step('the VNC console opens and connects', async () => {
  await page.goto(consoleUrl('vnc'))
  await page.getByRole('heading', { name: /^Console/ }).waitFor().catch(() => {
    throw new Failure(`${consoleUrl('vnc')} should show the console page (at ${page.url()})`)
  })
  await waitConnected(page, '#vnc-screen', 'VNC')
  check((await alertText(page)) === '', `a connected console should show no error: ${await alertText(page)}`)
  check(await page.getByRole('button', { name: 'Ctrl-Alt-Del' }).isEnabled(), 'Ctrl-Alt-Del should be enabled while connected')
})

await step('the VNC screen shows the guest (over 100 non-black pixels within 60 s)', async () => {
  const until = Date.now() + SLOW
  let px = { found: false, w: 0, h: 0, lit: 0 }
  while (Date.now() < until) {
    px = await canvasPixels(page)
    if (px.lit > 100) break
    const st = await page.locator('#vnc-screen').getAttribute('data-state')
    check(st === 'connected', `the VNC console went ${st} while waiting for a picture: ${(await alertText(page)) || (await statusText(page))}`)
    await page.waitForTimeout(500)
  }
  check(px.found, 'there is no noVNC canvas inside #vnc-screen')
  check(px.lit > 100, `the VNC canvas (${px.w}x${px.h}) stayed black: ${px.lit} pixels with r+g+b > 30`)
  console.log(`  canvas ${px.w}x${px.h}, ${px.lit} lit pixels`)
  await shot(page, 'vnc-console')
})

await step('switching to Serial closes VNC and connects the serial console', async () => {
  await page.locator('nav[aria-label="Console type"]').getByRole('link', { name: 'Serial', exact: true }).click()
  await page.waitForURL((u) => u.searchParams.get('protocol') === 'serial', { timeout: T }).catch(() => {
    throw new Failure(`the Serial switch should put protocol=serial in the address (at ${page.url()})`)
  })
  await waitConnected(page, '#serial-terminal', 'serial')
  check((await page.locator('#vnc-screen').count()) === 0, 'the VNC viewer should be gone on the serial console')
})

await step(`the serial terminal shows the guest's output (${MARK}…)`, async () => {
  const text = await waitTerminalText(page, MARK, SLOW)
  const line = text.split('\n').find((l) => l.includes(MARK))
  console.log(`  first marker line: ${JSON.stringify(line)}`)
})

await step(`typing ${TYPED} + Enter gets ${ECHO} back`, async () => {
  await page.locator('#serial-terminal .xterm-screen').click()
  const focused = await page.evaluate(() => !!document.activeElement?.closest('#serial-terminal'))
  check(focused, 'a click on the terminal should give it the keyboard focus')
  await page.keyboard.type(TYPED, { delay: 20 })
  await page.keyboard.press('Enter')
  await waitTerminalText(page, ECHO, T)
  await shot(page, 'serial-console')
})

await step('a reload of the serial console connects again', async () => {
  await page.reload()
  await waitConnected(page, '#serial-terminal', 'serial')
  check((await alertText(page)) === '', `a reconnected console should show no error: ${await alertText(page)}`)
})

await h.finish()
