// Browser test of the web console against a running platform, with a real
// Chromium (playwright-core drives /usr/bin/chromium; nothing is fetched).
//
// Inputs (environment):
//   CONSOLE_URL      the gateway, e.g. http://127.0.0.1:30300 (required)
//   ADMIN_USER       default sysadmin
//   ADMIN_PASSWORD   required
//   MEMBER_USER      a member of one other project (required)
//   MEMBER_PASSWORD  required
//   SCREENSHOT_DIR   where the page screenshots go (default: none taken)
//   IMAGE_FILE       an image to upload (default: a 2 MB qcow2 made with
//                    qemu-img, else 2 MB of raw bytes)
//   CHROMIUM         the browser (default /usr/bin/chromium)
//   HOST_NAME        the simulated host's name (default host0)
//   NETWORK_NAME     the network to put the server on (default net0)
//   AWS_URL          an EC2 endpoint (moto) to add as an AWS account; the
//                    step is left out when unset
//   AWS_SERVER       a name the account's instances have (Name tag): the
//                    servers list must show it after the sync
//   STATE_FILE       save the admin's cookies there at the end (for PHASE)
//   PHASE            `stale`: only check that the cookies in STATE_FILE,
//                    from before a gateway restart with a new key, lead to
//                    the login page and a new login works
//
// Prints each step as it passes; exits 1 with a message at the first failure.

import { execFileSync } from 'node:child_process'
import { writeFileSync, existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { Failure, check, envOf, LAPTOP, T, start } from './harness.mjs'

const env = envOf('console.mjs')
const URL0 = env('CONSOLE_URL').replace(/\/+$/, '')
const ADMIN_USER = env('ADMIN_USER', 'sysadmin')
const ADMIN_PASSWORD = env('ADMIN_PASSWORD')
const MEMBER_USER = env('MEMBER_USER')
const MEMBER_PASSWORD = env('MEMBER_PASSWORD')
const SHOTS = env('SCREENSHOT_DIR', '')
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium')
const HOST_NAME = env('HOST_NAME', 'host0')
const NETWORK_NAME = env('NETWORK_NAME', 'net0')
const AWS_URL = env('AWS_URL', '')
const AWS_SERVER = env('AWS_SERVER', '')
const STATE_FILE = env('STATE_FILE', '')
const PHASE = env('PHASE', 'all')
const SERVER = `e2e-vm-${Date.now().toString(36)}`
const IMAGE = `e2e-img-${Date.now().toString(36)}`
const PHONE = { width: 390, height: 844 }

const h = await start({
  script: 'console-e2e',
  url: URL0,
  shots: SHOTS,
  executable: CHROMIUM,
  // Let lazy chunks, lists and fonts settle; no spinner in the picture.
  settle: async (page) => {
    await page.waitForLoadState('networkidle').catch(() => {})
    await page.locator('table.grid[aria-busy="true"]').first().waitFor({ state: 'detached', timeout: 5000 }).catch(() => {})
  },
})
const { step, newPage, shot, login } = h
const work = h.work
console.log(`console ${URL0}, ${CHROMIUM} ${h.browser.version()}`)

/** Wait until the list has finished loading. */
async function listLoaded(page) {
  await page.locator('table.grid').first().waitFor()
  await page.waitForFunction(() => {
    const t = document.querySelector('section.list table.grid')
    return t && t.getAttribute('aria-busy') === 'false'
  })
}

/** The list row whose text contains `text` (first one). */
const row = (page, text) => page.locator('section.list tbody tr', { hasText: text }).first()

function makeImage() {
  const given = process.env.IMAGE_FILE
  if (given) {
    check(existsSync(given), `IMAGE_FILE ${given} does not exist`)
    return { path: given, format: given.endsWith('.qcow2') ? 'qcow2' : 'raw' }
  }
  const q = join(work, `${IMAGE}.qcow2`)
  try {
    // A 64 MB virtual disk with 2 MB written: a real qcow2 of about 2 MB.
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', q, '64M'])
    execFileSync('qemu-io', ['-c', 'write -P 0x5a 0 2M', q], { stdio: 'ignore' })
    return { path: q, format: 'qcow2' }
  } catch {
    if (existsSync(q) && statSync(q).size > 0) return { path: q, format: 'qcow2' }
  }
  const r = join(work, `${IMAGE}.raw`)
  const buf = Buffer.alloc(2 << 20)
  for (let i = 0; i < buf.length; i += 4096) buf[i] = i & 0xff
  writeFileSync(r, buf)
  return { path: r, format: 'raw' }
}

// --- the steps --------------------------------------------------------------

if (PHASE === 'stale') {
  await step('cookies from before a gateway restart with a new key show the login page; a new login works', async () => {
    check(STATE_FILE && existsSync(STATE_FILE), `PHASE=stale needs STATE_FILE with the saved cookies: ${STATE_FILE}`)
    const page = await newPage(LAPTOP, { storageState: STATE_FILE })
    const ctx = page.context()
    check((await ctx.cookies()).some((c) => c.name === 'yunionauth'), 'the saved state should hold the old session cookie')
    await page.goto('/servers')
    await page.waitForURL(/\/login/).catch(() => {
      throw new Failure(`with the old cookie /servers should go to the login page, it is at ${page.url()}`)
    })
    const err = page.locator('#login-error')
    if (await err.count()) throw new Failure(`the login page should show no error: ${await err.innerText()}`)
    await page.getByLabel('User name').fill(ADMIN_USER)
    await page.getByLabel('Password').fill(ADMIN_PASSWORD)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.waitForURL((u) => u.pathname === '/servers')
    await listLoaded(page)
    await ctx.close()
  })
} else {
let admin
await step(`admin ${ADMIN_USER} logs in and the servers page lists servers`, async () => {
  admin = await newPage()
  await login(admin, ADMIN_USER, ADMIN_PASSWORD)
  await admin.getByRole('heading', { name: 'Servers', exact: true }).waitFor()
  await listLoaded(admin)
  // The admin view: the system scope, identity pages in the menu.
  const toggle = admin.getByLabel('Admin view')
  check(await toggle.isVisible(), 'the system admin should see the "Admin view" switch')
  if (!(await toggle.isChecked())) await toggle.check()
  await admin.locator('#sidenav').getByRole('link', { name: 'Users' }).waitFor().catch(() => {
    throw new Failure('in the admin view the menu should offer Users')
  })
  for (const l of ['Servers', 'Images', 'Hosts', 'Networks', 'Cloud accounts', 'Tasks']) {
    check(await admin.locator('#sidenav').getByRole('link', { name: l, exact: true }).isVisible(), `the admin menu should offer ${l}`)
  }
  await listLoaded(admin)
  const pager = await admin.locator('nav.pager').innerText()
  check(/\d+ total/.test(pager), `the servers list should say how many there are: ${pager}`)
})

await step(`create server ${SERVER} (1 vCPU, 256 MB, 512 MB disk, ${NETWORK_NAME}) in the wizard; the list shows it running`, async () => {
  const page = admin
  await page.getByRole('link', { name: 'Create server' }).click()
  await page.waitForURL(/\/servers\/create$/)
  await page.getByRole('heading', { name: 'Create server' }).waitFor()
  await page.getByLabel('Name *').fill(SERVER)
  await page.getByLabel('Image', { exact: true }).selectOption({ label: 'No image (blank disk)' })
  await page.getByLabel('vCPU').fill('1')
  await page.getByLabel('Memory (MB)').fill('256')
  await page.getByLabel('System disk (GB)').fill('0.5')
  const net = page.getByLabel('Network', { exact: true })
  const opt = net.locator('option', { hasText: NETWORK_NAME })
  check((await opt.count()) === 1, `the network select should offer ${NETWORK_NAME}: ${await net.innerText()}`)
  await net.selectOption({ label: (await opt.innerText()).trim() })
  await page.locator('.forecast .ok', { hasText: 'Fits' }).waitFor().catch(async () => {
    throw new Failure(`the forecast should say the server fits: ${await page.locator('.forecast').innerText()}`)
  })
  const create = page.getByRole('button', { name: 'Create', exact: true })
  check(await create.isEnabled(), 'Create should be enabled once the forecast fits')
  const posted = page.waitForResponse((r) => r.url().endsWith('/api/v2/servers') && r.request().method() === 'POST')
  await create.click()
  const resp = await posted
  const sent = resp.request().postDataJSON()
  if (resp.status() >= 300) throw new Failure(`POST /api/v2/servers answered ${resp.status()}: ${await resp.text().catch(() => '(no body)')}`)
  check(sent.disks?.[0]?.size === 512, `the wizard should send a 512 MB disk: ${JSON.stringify(sent.disks)}`)
  check(JSON.stringify(sent.nets ?? []).includes('network'), `the wizard should send the network: ${JSON.stringify(sent.nets)}`)
  await page.waitForURL((u) => u.pathname === '/servers')
  await row(page, SERVER).waitFor().catch(() => {
    throw new Failure(`the new server ${SERVER} should be listed`)
  })
  // No reload: the list polls while the row is transitional.
  await row(page, SERVER).locator('.badge', { hasText: 'running' }).waitFor({ timeout: 90_000 }).catch(async () => {
    throw new Failure(`${SERVER} did not show running in the list within 90 s: ${await row(page, SERVER).innerText()}`)
  })
  const text = await row(page, SERVER).innerText()
  check(text.includes(HOST_NAME), `the row should name the host ${HOST_NAME}: ${text}`)
})

await step('an impossible request (1 TB of memory) shows the per-host reasons and keeps Create disabled', async () => {
  const page = admin
  await page.goto('/servers/create')
  await page.getByLabel('Name *').fill('too-big')
  await page.getByLabel('Image', { exact: true }).selectOption({ label: 'No image (blank disk)' })
  await page.getByLabel('vCPU').fill('1')
  await page.getByLabel('Memory (MB)').fill(String(1024 * 1024))
  const verdict = page.locator('.forecast .error', { hasText: 'Does not fit' })
  await verdict.waitFor().catch(async () => {
    throw new Failure(`the forecast should say it does not fit: ${await page.locator('.forecast').innerText()}`)
  })
  const details = page.locator('.forecast details')
  check((await details.count()) === 1, `the forecast should list why hosts were left out: ${await page.locator('.forecast').innerText()}`)
  check(await details.evaluate((d) => d.open), 'the per-host reasons should be open when nothing fits')
  const reasons = await details.innerText()
  check(reasons.includes(HOST_NAME), `the reasons should name the host ${HOST_NAME}: ${reasons}`)
  check(/mem/i.test(reasons), `the reasons should be about memory: ${reasons}`)
  check(await page.getByRole('button', { name: 'Create', exact: true }).isDisabled(), 'Create must stay disabled when nothing fits')
  await shot(page, 'create-server-does-not-fit', { fullPage: true })
})

let image
await step('upload an image with the progress bar; the images list shows it active', async () => {
  const page = admin
  image = makeImage()
  await page.goto('/images')
  await listLoaded(page)
  await page.getByRole('button', { name: 'Upload image' }).click()
  const dlg = page.getByRole('dialog')
  await dlg.waitFor()
  await dlg.getByLabel('File *').setInputFiles(image.path)
  await dlg.getByLabel('Name *').fill(IMAGE)
  await dlg.getByLabel('Disk format').selectOption(image.format)
  // Record every progress the dialog shows (a loopback upload is quick).
  await page.evaluate(() => {
    window.__progress = []
    const seen = () => {
      const p = document.querySelector('.progress progress')
      if (p) window.__progress.push([Number(p.value), Number(p.max), document.querySelector('.progress span')?.textContent ?? ''])
    }
    new MutationObserver(seen).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true })
  })
  const posted = page.waitForResponse((r) => r.url().includes('/api/s/image/') && r.request().method() === 'POST', { timeout: 60_000 })
  await dlg.getByRole('button', { name: 'Upload', exact: true }).click()
  const resp = await posted
  if (resp.status() >= 300) throw new Failure(`the upload answered ${resp.status()}: ${await resp.text().catch(() => '(no body)')}`)
  await dlg.waitFor({ state: 'detached' }).catch(async () => {
    throw new Failure(`the upload dialog should close after the upload: ${await dlg.innerText()}`)
  })
  const progress = await page.evaluate(() => window.__progress)
  check(progress.length > 0, 'the progress bar never showed')
  const size = statSync(image.path).size
  check(progress.some(([, max]) => max === size), `the progress bar should count to the file size ${size}: ${JSON.stringify(progress.slice(-3))}`)
  await listLoaded(page)
  await row(page, IMAGE).waitFor().catch(() => {
    throw new Failure(`the uploaded image ${IMAGE} should be listed`)
  })
  // No reload: the list polls while the image is being probed.
  await row(page, IMAGE).locator('.badge', { hasText: 'active' }).waitFor({ timeout: 60_000 }).catch(async () => {
    throw new Failure(`the uploaded image should become active in the list: ${await row(page, IMAGE).innerText()}`)
  })
  const text = await row(page, IMAGE).innerText()
  check(text.includes(image.format), `the image list should show the format ${image.format}: ${text}`)
})

if (AWS_URL) {
  await step(`add an AWS account (${AWS_URL}) in the console; its first sync finishes with no errors${AWS_SERVER ? ` and ${AWS_SERVER} is among the servers` : ''}`, async () => {
    const page = admin
    const name = `e2e-aws-${Date.now().toString(36)}`
    await page.goto('/cloudaccounts')
    await listLoaded(page)
    await page.getByRole('button', { name: 'Add AWS account' }).click()
    const dlg = page.getByRole('dialog')
    await dlg.waitFor()
    await dlg.getByLabel(/^Name/).fill(name)
    await dlg.getByLabel(/^Access key ID/).fill('AKIDCONSOLE')
    await dlg.getByLabel(/^Secret access key/).fill('console-secret-never-shown')
    await dlg.getByLabel(/^Regions/).fill('us-east-1')
    await dlg.getByLabel(/^Endpoint URL/).fill(AWS_URL)
    const posted = page.waitForResponse((r) => r.url().endsWith('/api/v2/cloudaccounts') && r.request().method() === 'POST')
    await dlg.getByRole('button', { name: 'Create', exact: true }).click()
    const resp = await posted
    if (resp.status() >= 300) throw new Failure(`POST /api/v2/cloudaccounts answered ${resp.status()}: ${await resp.text().catch(() => '(no body)')}`)
    check(!(await resp.text()).includes('console-secret-never-shown'), 'the create answer must not echo the secret')
    await dlg.waitFor({ state: 'detached' })
    await row(page, name).waitFor()
    // No reload: the list polls while the sync is queued or running.
    await row(page, name).locator('td', { hasText: /^idle$/ }).first().waitFor({ timeout: 120_000 }).catch(async () => {
      throw new Failure(`the account's first sync should finish (Sync idle): ${await row(page, name).innerText()}`)
    })
    const text = await row(page, name).innerText()
    check(/normal/.test(text), `the account should be healthy after its sync: ${text}`)
    check(!text.includes('console-secret-never-shown'), 'the list must not show the secret')
    await shot(page, 'cloudaccounts')
    if (AWS_SERVER) {
      // The account's instances are servers like any other.
      await page.goto('/servers')
      await listLoaded(page)
      await page.getByPlaceholder('Search by name').fill(AWS_SERVER)
      await page.getByPlaceholder('Search by name').press('Enter')
      await listLoaded(page)
      await row(page, AWS_SERVER).waitFor({ timeout: 10_000 }).catch(async () => {
        throw new Failure(`the synced AWS instance ${AWS_SERVER} should be in the servers list: ${(await page.locator('section.list').innerText()).slice(0, 500)}`)
      })
      const r = await row(page, AWS_SERVER).innerText()
      check(/running/.test(r), `the synced instance should show running: ${r}`)
    }
  })
}

await step('screenshots of the main pages', async () => {
  const page = admin
  const pages = [
    ['overview', '/', 'Overview'],
    ['servers', '/servers', 'Servers'],
    ['server-create', '/servers/create', 'Create server'],
    ['images', '/images', 'Images'],
    ['hosts', '/hosts', 'Hosts'],
    ['networks', '/networks', 'Networks'],
    ['users', '/users', 'Users'],
    ['tasks', '/tasks', 'Tasks'],
  ]
  for (const [file, path, heading] of pages) {
    await page.goto(path)
    await page.getByRole('heading', { name: heading, exact: true }).first().waitFor().catch(async () => {
      throw new Failure(`${path} should show the heading "${heading}"; it shows: ${(await page.locator('main').innerText()).slice(0, 300)}`)
    })
    const err = page.locator('main .error[role="alert"], main .error-list')
    if (await err.count()) throw new Failure(`${path} shows an error: ${await err.first().innerText()}`)
    if (path === '/servers/create') await page.locator('.forecast .ok, .forecast .muted').first().waitFor()
    if (['/servers', '/hosts', '/networks', '/images', '/users'].includes(path)) {
      await listLoaded(page)
      const empty = await page.locator('section.list td.empty').count()
      check(!empty, `${path} should list something`)
    }
    await shot(page, file)
    // The server detail, from the list.
    if (path === '/servers') {
      await row(page, SERVER).getByRole('link', { name: SERVER }).click()
      await page.getByRole('heading', { name: SERVER }).waitFor()
      const facts = await page.locator('dl.facts').innerText()
      check(facts.includes(HOST_NAME), `the server detail should name the host: ${facts}`)
      const nics = await page.locator('table.grid').first().innerText()
      check(/10\.0\.0\.\d+/.test(nics), `the server detail should list its NIC on ${NETWORK_NAME}: ${nics}`)
      const disks = await page.locator('table.grid').nth(1).innerText()
      check(disks.includes('512 MB'), `the server detail should list its 512 MB disk: ${disks}`)
      await shot(page, 'server-detail')
    }
  }
  const phone = await newPage(PHONE)
  await login(phone, ADMIN_USER, ADMIN_PASSWORD)
  await listLoaded(phone)
  await row(phone, SERVER).waitFor()
  check(await phone.getByRole('button', { name: 'Menu' }).isVisible(), 'at phone width the menu button should show')
  check(!(await phone.locator('#sidenav').isVisible()) || (await phone.locator('#sidenav').boundingBox()).x < 0, 'at phone width the side menu should be collapsed')
  await shot(phone, 'servers-phone')
  await phone.context().close()
  h.current = admin
})

let member
await step(`member ${MEMBER_USER} sees only its own project: no admin server, no admin, identity or host pages`, async () => {
  member = await newPage()
  await login(member, MEMBER_USER, MEMBER_PASSWORD)
  await listLoaded(member)
  check(!(await row(member, SERVER).count()), `the member must not see the admin's server ${SERVER}`)
  check(!(await member.getByLabel('Admin view').count()), 'the member must not see the "Admin view" switch')
  const nav = await member.locator('#sidenav').innerText()
  for (const l of ['Hosts', 'Users', 'Domains', 'Projects', 'Groups', 'Roles', 'Policies', 'Role assignments']) {
    check(!new RegExp(`^${l}$`, 'm').test(nav), `the member's menu must not offer ${l}: ${nav.replace(/\n/g, ', ')}`)
  }
  check(/^Servers$/m.test(nav), `the member's menu should offer Servers: ${nav.replace(/\n/g, ', ')}`)
  for (const path of ['/hosts', '/users', '/domains', '/role_assignments']) {
    await member.goto(path)
    await member.getByRole('heading', { name: /not available|not found/i }).first().waitFor().catch(async () => {
      throw new Failure(`the member opening ${path} should be refused; it shows: ${(await member.locator('main').innerText()).slice(0, 300)}`)
    })
  }
  await member.goto('/networks')
  await listLoaded(member)
  check(!(await member.getByRole('button', { name: /^(Create|New)/ }).count()), 'the member must not be offered to create networks')
})

await step('logout goes to the login page and the session is gone', async () => {
  const page = member
  await page.goto('/servers')
  await listLoaded(page)
  await page.getByRole('button', { name: 'Log out' }).click()
  await page.waitForURL(/\/login/)
  await page.getByRole('button', { name: 'Sign in' }).waitFor()
  await page.goto('/servers')
  await page.waitForURL(/\/login/).catch(() => {
    throw new Failure(`after logout /servers should need a login again, it is at ${page.url()}`)
  })
  const cookies = await page.context().cookies()
  check(!cookies.some((c) => c.name === 'yunionauth' && c.value), `the session cookie should be gone: ${JSON.stringify(cookies.map((c) => c.name))}`)
  await page.context().close()
})

await step('a stale or foreign yunionauth cookie shows the login page, not an error', async () => {
  const b64 = (s) => Buffer.from(s).toString('base64url')
  const values = {
    garbage: 'not-a-session-%%%',
    foreign: b64(JSON.stringify({ exp: '2099-01-01T00:00:00Z', session: b64('x'.repeat(80)), user: ADMIN_USER, user_id: 'u' })),
  }
  for (const [kind, value] of Object.entries(values)) {
    const page = await newPage()
    const u = new URL(URL0)
    await page.context().addCookies([{ name: 'yunionauth', value, domain: u.hostname, path: '/', httpOnly: true, sameSite: 'Strict' }])
    await page.goto('/')
    await page.waitForURL(/\/login/).catch(() => {
      throw new Failure(`with a ${kind} cookie / should go to the login page, it is at ${page.url()}`)
    })
    await page.getByRole('button', { name: 'Sign in' }).waitFor()
    const err = page.locator('#login-error')
    if (await err.count()) throw new Failure(`the login page should show no error with a ${kind} cookie: ${await err.innerText()}`)
    if (kind === 'garbage') await shot(page, 'login')
    await page.context().close()
  }
})

  if (STATE_FILE) await admin.context().storageState({ path: STATE_FILE })
}

await h.finish()
