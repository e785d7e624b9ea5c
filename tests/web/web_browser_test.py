"""The chat page in a real browser: Debian's chromium, headless, driven by
Selenium through chromedriver, against a real parleyd on free ports.

Two people, each in a browser of their own (alice on a desktop-sized
window, bob at 360 px wide), register, meet in a room and chat both ways;
the page keeps to the rules it shows (a bad user id is refused before any
call), counts unread messages, loads history as bob scrolls up, shows a
message that looks like HTML as text (and runs nothing), survives a
reload with no duplicate, and a daemon restart with no gap: a message
typed while the server is away waits, is sent when it is back, and one
that waited too long is marked failed and goes on Retry. A private room
is joined by invitation and by its id; a moderator renames it, bans with
a reason, unbans; the person removed is told by whom and why (news only
their feed brings). A room joined elsewhere shows up on the open page at
once (its JOINED comes with the feed); a page left ends its stream (its person goes offline at once) and resumes
it when back. Log out and "stay logged in" decide where the token is
kept. Screenshots of both windows are written to the build tree.

Every wait has a deadline (WebDriverWait); nothing here measures time.
Usage: web_browser_test.py PARLEYD SCREENSHOT_DIR
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import (NoAlertPresentException,
                                        StaleElementReferenceException, TimeoutException)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

PARLEYD, SHOTS = sys.argv[1], sys.argv[2]
HERE = os.path.dirname(os.path.abspath(__file__))
WAIT = 30  # seconds any one state may take to show up


def fail(msg):
    raise AssertionError(msg)


def ok(msg):
    print("ok", msg, flush=True)


# ---- the daemon ---------------------------------------------------------------------

class Daemon:
    """parleyd on free ports with a temporary data dir, as tests/e2e/lib.sh
    starts it; restarts keep the ports and the data."""

    def __init__(self, work):
        self.work = work
        out = subprocess.run([sys.executable, os.path.join(HERE, "..", "free_ports.py"), "8"],
                             check=True, capture_output=True, text=True).stdout.split()
        self.ports = [int(p) for p in out]
        self.url = f"http://127.0.0.1:{self.ports[7]}"
        self.proc = None
        self.log = open(os.path.join(work, "parleyd.log"), "ab")

    def start(self):
        p = self.ports
        t = lambda i: f"tcp://127.0.0.1:{p[i]}"
        self.proc = subprocess.Popen([
            PARLEYD, "--data-dir", os.path.join(self.work, "data"),
            "--auth-listen", t(0), "--rooms-listen", t(1), "--history-listen", t(2),
            "--messaging-listen", t(3), "--events-listen", t(4),
            "--room-events-listen", t(5), "--rooms-internal-listen", t(6),
            "--http-listen", self.url], stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + WAIT
        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if self.proc.poll() is not None:
                fail(f"parleyd exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                fail("parleyd did not serve /healthz in time")
            time.sleep(0.05)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def post(self, method, body, token=None):
        req = urllib.request.Request(self.url + "/parley.v1." + method,
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        if token:
            req.add_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(req, timeout=WAIT) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            fail(f"{method}: HTTP {e.code}: {e.read()!r}")


# ---- browsers -----------------------------------------------------------------------

def browser(work, name, width, height):
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run",
              "--user-data-dir=" + os.path.join(work, "profile-" + name),
              f"--window-size={width},{height}"]:
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    d.who = name
    if width < 500:
        # Headless windows are at least 500 px wide: a phone's width
        # comes from device emulation (kept across reloads).
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": True})
    return d


def until(d, what, cond, timeout=WAIT):
    # An element found and then re-rendered before it is read (a list
    # redrawn by an event) is looked for again, as a person would look.
    try:
        return WebDriverWait(d, timeout, poll_frequency=0.05,
                             ignored_exceptions=(StaleElementReferenceException,)
                             ).until(lambda _: cond())
    except TimeoutException:
        fail(f"{d.who}: timed out waiting for {what}")


def el(d, id_):
    return d.find_element(By.ID, id_)


def visible_text(d, id_):
    e = d.find_elements(By.ID, id_)
    return e[0].text if e and e[0].is_displayed() else ""


def type_into(d, id_, text):
    e = el(d, id_)
    e.clear()
    e.send_keys(text)


def log_items(d):
    """(seq or None, class, text) of each item of the open room's log."""
    return d.execute_script("""
        return Array.from(document.querySelectorAll('#log > li')).map(li => [
          li.dataset.seq ? Number(li.dataset.seq) : null, li.className,
          (li.querySelector('.text') || li).textContent]);""")


def texts(d):
    return [t for s, c, t in log_items(d) if "msg" in c.split()]


def has_text(d, text):
    return text in texts(d)


def check_once_in_order(d, who):
    """Every persisted item once, by seq, with no gap in between."""
    seqs = [s for s, c, t in log_items(d) if s is not None]
    if seqs != sorted(set(seqs)):
        fail(f"{who}: seqs not once and in order: {seqs}")
    if seqs and seqs != list(range(seqs[0], seqs[-1] + 1)):
        fail(f"{who}: a gap in the seqs: {seqs}")
    msgs = texts(d)
    if len(msgs) != len(set(msgs)):
        fail(f"{who}: a message shows twice: {msgs}")
    return seqs


def no_alert(d):
    try:
        d.switch_to.alert
    except NoAlertPresentException:
        return
    fail(f"{d.who}: an alert fired")


def register(d, user, name, password):
    until(d, "the login form", lambda: el(d, "login-form").is_displayed())
    el(d, "show-register").click()
    type_into(d, "reg-user", user)
    type_into(d, "reg-name", name)
    type_into(d, "reg-password", password)
    type_into(d, "reg-password2", password)
    el(d, "register-submit").click()
    until(d, "the chat after registering", lambda: el(d, "chat-screen").is_displayed())


def open_room_list(d):
    """At 360 px the rooms and the open room take turns."""
    if not el(d, "rooms-nav").is_displayed():
        el(d, "back").click()
        until(d, "the room list", lambda: el(d, "rooms-nav").is_displayed())


def join(d, room):
    open_room_list(d)
    btn = (By.CSS_SELECTOR, f'#other-rooms li[data-room="{room}"] button')
    until(d, f"{room} in the room list", lambda: d.find_elements(*btn))
    d.find_element(*btn).click()
    until(d, f"{room} open", lambda: el(d, "room-title").is_displayed()
          and d.execute_script("return sessionStorage.getItem('parley.room')") == room)


def send(d, text):
    box = el(d, "composer-text")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def badge(d, room):
    b = d.find_elements(By.CSS_SELECTOR, f'#my-rooms li[data-room="{room}"] .badge')
    return b[0].text if b else ""


def console_errors(d):
    """Errors of scripts and of the page's policy (a CSP violation is one);
    failed requests are not: the test makes the server go away."""
    return [e for e in d.get_log("browser")
            if e["level"] == "SEVERE" and e.get("source") != "network"]


# ---- the scenario -----------------------------------------------------------------------

def main():
    work = tempfile.mkdtemp(prefix="parley-web-")
    os.makedirs(SHOTS, exist_ok=True)
    daemon = Daemon(work)
    browsers = []
    try:
        daemon.start()
        alice = browser(work, "alice", 1280, 800)
        browsers.append(alice)
        bob = browser(work, "bob", 360, 740)
        browsers.append(bob)
        for d in browsers:
            d.get(daemon.url + "/")
        inner = bob.execute_script("return window.innerWidth")
        if inner != 360:
            fail(f"bob's window is {inner} px wide, not 360")

        # --- the rules are shown and kept before anything is sent ---
        until(bob, "the login form", lambda: el(bob, "login-form").is_displayed())
        el(bob, "show-register").click()
        rule = el(bob, "reg-user-rule").text
        if "3 to 32" not in rule:
            fail(f"the user id rule is not shown: {rule!r}")
        type_into(bob, "reg-user", "Bo")
        type_into(bob, "reg-name", "Bob")
        type_into(bob, "reg-password", "short")
        type_into(bob, "reg-password2", "short")
        el(bob, "register-submit").click()
        until(bob, "the user id refused", lambda: "3 to 32" in visible_text(bob, "register-error"))
        if bob.switch_to.active_element != el(bob, "reg-user"):
            fail("the refused field does not have the focus")
        type_into(bob, "reg-user", "bob")
        el(bob, "register-submit").click()
        until(bob, "the password refused", lambda: "8 bytes" in visible_text(bob, "register-error"))
        bob.save_screenshot(os.path.join(SHOTS, "narrow-360-register.png"))
        ok("registration rules shown and checked before submitting")

        # --- register, create, join, chat both ways ---
        register(alice, "alice", "Alice Liddell", "pw-alice-secret")
        el(alice, "new-room").click()
        type_into(alice, "create-id", "lobby")
        type_into(alice, "create-name", "The Lobby")
        type_into(alice, "create-topic", "say hello")
        el(alice, "create-id").send_keys(Keys.ENTER)
        alice.save_screenshot(os.path.join(SHOTS, "desktop-new-room.png"))
        until(alice, "the new room open", lambda: el(alice, "room-title").text == "The Lobby")
        until(alice, "her own join", lambda: any("Alice Liddell joined" in t for _, _, t in log_items(alice)))

        type_into(bob, "reg-password", "pw-bob-secret")
        type_into(bob, "reg-password2", "pw-bob-secret")
        el(bob, "register-submit").click()
        until(bob, "the chat after registering", lambda: el(bob, "chat-screen").is_displayed())
        join(bob, "lobby")
        until(alice, "bob joined", lambda: any(t.startswith("Bob joined") for _, _, t in log_items(alice)))
        until(alice, "bob online", lambda: any(t.startswith("Bob is online") for _, _, t in log_items(alice)))
        until(alice, "2 members", lambda: "2 members" in el(alice, "room-meta").text)

        send(alice, "hello bob")
        until(bob, "alice's hello", lambda: has_text(bob, "hello bob"))
        send(bob, "hi alice")
        until(alice, "bob's reply", lambda: has_text(alice, "hi alice"))
        until(bob, "his own message acknowledged",
              lambda: not bob.find_elements(By.CSS_SELECTOR, "#log li.pending"))
        whos = lambda d: d.execute_script(
            "return [...document.querySelectorAll('#log li.msg')].map(li => li.querySelector('.who').textContent)")
        until(alice, "display names", lambda: whos(alice)[-2:] == ["Alice Liddell", "Bob"])
        until(bob, "display names", lambda: whos(bob)[-2:] == ["Alice Liddell", "Bob"])
        ok("two browsers registered, met in a room and chatted both ways")

        # --- landmarks and the live region a screen reader follows ---
        for d in browsers:
            marks = d.execute_script("""
                const shown = (e) => e && e.getClientRects().length > 0;
                return [shown(document.querySelector('body > header')),
                        shown(document.querySelector('nav[aria-label]')) || shown(document.querySelector('main#room-view')),
                        shown(document.querySelector('main#room-view')),
                        document.getElementById('announce').getAttribute('aria-live')];""")
            if marks != [True, True, True, "polite"]:
                fail(f"{d.who}: landmarks header/nav/main and aria-live: {marks}")
        until(bob, "alice's message announced",
              lambda: ": hello bob" in el(bob, "announce").get_attribute("textContent"))
        unlabelled = alice.execute_script("""
            return [...document.querySelectorAll('input, textarea')].filter(
              i => !(i.labels && i.labels.length) && !i.getAttribute('aria-label')).map(i => i.id);""")
        if unlabelled:
            fail(f"fields without a label: {unlabelled}")
        ok("header, nav and main landmarks; new messages announced (aria-live); every field labelled")

        # --- keyboard: Escape clears the draft, Shift+Enter is a new line ---
        box = el(bob, "composer-text")
        box.send_keys("never sent")
        box.send_keys(Keys.ESCAPE)
        if box.get_attribute("value") != "":
            fail("Escape did not clear the draft")
        box.send_keys("two")
        box.send_keys(Keys.SHIFT, Keys.ENTER)
        box.send_keys("lines")
        box.send_keys(Keys.ENTER)
        until(alice, "the two-line message", lambda: has_text(alice, "two\nlines"))
        ok("Enter sends, Shift+Enter breaks the line, Escape clears")

        # --- typing, edits, deletes ---
        box.send_keys("something I may not s")
        until(alice, "bob typing", lambda: el(alice, "typing").text == "Bob is typing…")
        box.send_keys(Keys.ESCAPE)
        until(alice, "bob no longer typing", lambda: el(alice, "typing").text == "")
        seq = alice.execute_script("""return [...document.querySelectorAll('#log li.msg.mine')]
            .find(li => li.querySelector('.text').textContent === 'hello bob').dataset.seq""")
        alice.find_element(By.CSS_SELECTOR, f'#log li[data-seq="{seq}"] .tools button').click()
        edit_box = until(alice, "the edit box", lambda: alice.find_elements(By.ID, f"edit-{seq}"))[0]
        edit_box.send_keys(Keys.END, ", welcome", Keys.ENTER)
        until(bob, "the edit", lambda: has_text(bob, "hello bob, welcome") and not has_text(bob, "hello bob"))
        edited = bob.find_element(By.CSS_SELECTOR, f'#log li[data-seq="{seq}"] .edited').text
        if edited != "(edited)":
            fail(f"the edited message is marked {edited!r}")
        send(alice, "oops, wrong room")
        until(bob, "the slip", lambda: has_text(bob, "oops, wrong room"))
        until(alice, "the slip acknowledged", lambda: not alice.find_elements(By.CSS_SELECTOR, "#log li.pending"))
        slip = alice.execute_script("""return [...document.querySelectorAll('#log li.msg.mine')]
            .find(li => li.querySelector('.text').textContent === 'oops, wrong room').dataset.seq""")
        delete = alice.find_element(By.CSS_SELECTOR, f'#log li[data-seq="{slip}"] .tools button:last-child')
        delete.click()
        if delete.text != "Really delete?":
            fail(f"Delete asks nothing first: {delete.text!r}")
        delete.click()
        until(bob, "the slip deleted", lambda: not has_text(bob, "oops, wrong room") and bob.find_element(
            By.CSS_SELECTOR, f'#log li[data-seq="{slip}"]').get_attribute("class") == "msg redacted")
        check_once_in_order(bob, "bob after an edit and a delete")
        ok("typing shown and cleared; own messages edited and deleted, seen so by the other")

        # --- direct messages ---
        type_into(alice, "dm-user", "bob")
        el(alice, "dm-user").send_keys(Keys.ENTER)
        until(alice, "the direct room", lambda: el(alice, "room-title").text == "@ Bob")
        send(alice, "psst, just between us")
        open_room_list(bob)
        type_into(bob, "dm-user", "alice")
        el(bob, "dm-user").send_keys(Keys.ENTER)
        until(bob, "the direct room", lambda: el(bob, "room-title").text == "@ Alice Liddell")
        until(bob, "the private message", lambda: has_text(bob, "psst, just between us"))
        open_room_list(bob)
        type_into(bob, "dm-user", "nobody-here")
        el(bob, "dm-user").send_keys(Keys.ENTER)
        until(bob, "no such user", lambda: visible_text(bob, "dm-error") == "There is no user nobody-here.")
        alice.find_element(By.CSS_SELECTOR, '#my-rooms li[data-room="lobby"] button').click()
        until(alice, "lobby open again", lambda: el(alice, "room-title").text == "The Lobby")
        open_room_list(bob)
        bob.find_element(By.CSS_SELECTOR, '#my-rooms li[data-room="lobby"] button').click()
        until(bob, "lobby open again", lambda: el(bob, "room-title").text == "The Lobby")
        ok("direct messages: both open the same room by user id; an unknown id is said in words")

        # --- members and moderation ---
        el(alice, "show-members").click()
        el(bob, "show-members").click()
        member = lambda d, user: d.execute_script("""
            const li = document.querySelector(`#member-list li[data-user="${arguments[0]}"]`);
            return li && [li.querySelector('.role')?.textContent ?? '',
                          li.querySelector('.online').textContent,
                          [...li.querySelectorAll('button')].map(b => b.textContent)];""", user)
        until(alice, "bob among the members", lambda: member(alice, "bob") ==
              ["", "online", ["Remove", "Ban", "Make moderator"]])
        alice.execute_script("""[...document.querySelectorAll('#member-list li[data-user="bob"] button')]
            .find(b => b.textContent === 'Make moderator').click()""")
        until(alice, "bob a moderator", lambda: member(alice, "bob") == ["moderator", "online", ["Remove", "Ban", "Make member"]])
        until(bob, "alice the admin, out of bob's reach", lambda: member(bob, "alice") == ["admin", "online", []])
        el(bob, "show-members").click()  # his own role is news of no event: a fresh look
        el(bob, "show-members").click()
        until(bob, "a moderator's tools in a public room", lambda: el(bob, "unban-form").is_displayed()
              and not el(bob, "invite-form").is_displayed() and el(bob, "settings-form").is_displayed())
        bob.save_screenshot(os.path.join(SHOTS, "narrow-360-members.png"))
        el(alice, "show-members").click()
        el(bob, "show-members").click()
        ok("members with roles and presence; the admin names a moderator, who cannot act on the admin")

        # --- a private room: joined by invitation; its settings; ban, unban ---
        el(alice, "new-room").click()
        type_into(alice, "create-id", "secret")
        type_into(alice, "create-name", "Secret")
        el(alice, "create-private").click()
        alice.save_screenshot(os.path.join(SHOTS, "desktop-new-private-room.png"))
        el(alice, "create-id").send_keys(Keys.ENTER)
        until(alice, "the private room open", lambda: el(alice, "room-title").text == "Secret")
        if "private" not in el(alice, "room-meta").text:
            fail(f"the private room's line says {el(alice, 'room-meta').text!r}")
        open_room_list(bob)
        type_into(bob, "join-id", "secret")
        el(bob, "join-id").send_keys(Keys.ENTER)
        # A private room is not to be told from no room to a stranger.
        until(bob, "the refusal in words", lambda: visible_text(bob, "join-error") ==
              "There is no room secret.")
        el(alice, "show-members").click()
        until(alice, "the invite form", lambda: el(alice, "invite-form").is_displayed())
        type_into(alice, "invite-user", "bob")
        el(alice, "invite-user").send_keys(Keys.ENTER)
        until(alice, "bob invited", lambda: visible_text(alice, "manage-status") ==
              "bob is invited: they can now join with the room id secret.")
        until(alice, "the invitation in the log", lambda: any(
            t.startswith("Bob was invited by Alice Liddell") for _, _, t in log_items(alice)))
        el(bob, "join-id").send_keys(Keys.ENTER)
        until(bob, "in the private room", lambda: el(bob, "room-title").text == "Secret")
        alice.save_screenshot(os.path.join(SHOTS, "desktop-manage.png"))

        type_into(alice, "settings-name", "Secret Garden")
        type_into(alice, "settings-topic", "plans for spring")
        el(alice, "settings-save").click()
        until(alice, "saved", lambda: visible_text(alice, "manage-status") == "The room is changed.")
        until(bob, "the new name and topic", lambda: el(bob, "room-title").text == "Secret Garden"
              and "plans for spring" in el(bob, "room-meta").text)
        until(bob, "the change in the log", lambda: any(
            "changed the room: Secret Garden (plans for spring)" in t for _, _, t in log_items(bob)))
        until(bob, "the new name in the list", lambda: bob.find_element(
            By.CSS_SELECTOR, '#my-rooms li[data-room="secret"] .room-name').get_attribute("textContent")
            == "Secret Garden")

        alice.execute_script("""[...document.querySelectorAll('#member-list li[data-user="bob"] button')]
            .find(b => b.textContent === 'Ban').click()""")
        until(alice, "the reason asked", lambda: alice.switch_to.active_element == el(alice, "reason-bob"))
        el(alice, "reason-bob").send_keys("spoiling the surprise")
        alice.save_screenshot(os.path.join(SHOTS, "desktop-ban-reason.png"))
        el(alice, "reason-bob").send_keys(Keys.ENTER)
        # The room hides itself from bob at once (a stranger to a PRIVATE
        # room is told it does not exist), yet his stream still brings
        # him the BANNED, with its reason.
        until(bob, "told in words", lambda: visible_text(bob, "page-error") ==
              "Alice Liddell banned you from Secret Garden: spoiling the surprise")
        until(bob, "secret gone from his rooms",
              lambda: not bob.find_elements(By.CSS_SELECTOR, '#my-rooms li[data-room="secret"]'))
        until(alice, "the ban in the log, with its reason", lambda: any(
            t.startswith("Bob was banned by Alice Liddell: spoiling the surprise") for _, _, t in log_items(alice)))
        type_into(alice, "invite-user", "bob")
        el(alice, "invite-user").send_keys(Keys.ENTER)
        until(alice, "no invitation while banned", lambda: visible_text(alice, "invite-error") ==
              "Could not invite bob: User 'bob' is banned from room 'secret': unban them first.")
        type_into(alice, "unban-user", "bob")
        el(alice, "unban-user").send_keys(Keys.ENTER)
        until(alice, "bob unbanned", lambda: visible_text(alice, "manage-status") ==
              "bob is no longer banned and may join again.")
        type_into(alice, "invite-user", "bob")
        el(alice, "invite-user").send_keys(Keys.ENTER)
        until(alice, "bob invited again", lambda: visible_text(alice, "manage-status") ==
              "bob is invited: they can now join with the room id secret.")
        open_room_list(bob)
        type_into(bob, "join-id", "secret")
        el(bob, "join-id").send_keys(Keys.ENTER)
        until(bob, "back in the private room", lambda: el(bob, "room-title").text == "Secret Garden")
        el(alice, "show-members").click()
        alice.find_element(By.CSS_SELECTOR, '#my-rooms li[data-room="lobby"] button').click()
        until(alice, "lobby open again", lambda: el(alice, "room-title").text == "The Lobby")
        open_room_list(bob)
        bob.find_element(By.CSS_SELECTOR, '#my-rooms li[data-room="lobby"] button').click()
        until(bob, "lobby open again", lambda: el(bob, "room-title").text == "The Lobby")
        ok("a private room: refused in words, invited, joined by id; renamed; ban with a reason, unban")

        # --- HTML in a message is text, and runs nothing ---
        xss = "<img src=x onerror=alert(1)>"
        send(alice, xss)
        until(bob, "the HTML-looking message", lambda: has_text(bob, xss))
        for d in (alice, bob):
            if d.find_elements(By.CSS_SELECTOR, "#log img"):
                fail(f"{d.who}: the message became an element")
            no_alert(d)
        ok("a message <img src=x onerror=alert(1)> shows as text and fires nothing")

        # --- unread counts in another room ---
        el(alice, "new-room").click()
        type_into(alice, "create-id", "side")
        el(alice, "create-id").send_keys(Keys.ENTER)
        until(alice, "the side room open", lambda: el(alice, "room-title").text == "side")
        send(bob, "while you were away")
        until(alice, "an unread badge on lobby", lambda: badge(alice, "lobby") == "1")
        alice.save_screenshot(os.path.join(SHOTS, "desktop-unread.png"))
        label = alice.find_element(By.CSS_SELECTOR, '#my-rooms li[data-room="lobby"] button').get_attribute("aria-label")
        if "1 unread" not in label or "2 members" not in label:
            fail(f"the lobby button says {label!r}")
        alice.find_element(By.CSS_SELECTOR, '#my-rooms li[data-room="lobby"] button').click()
        until(alice, "the badge gone", lambda: badge(alice, "lobby") == "")
        until(alice, "the unread message shown", lambda: has_text(alice, "while you were away"))
        ok("unread count on a room in the background, cleared on opening it")

        # --- history as bob scrolls up ---
        # (Alice makes the room on her page, where it opens.)
        el(alice, "new-room").click()
        type_into(alice, "create-id", "big")
        el(alice, "create-id").send_keys(Keys.ENTER)
        until(alice, "the big room open", lambda: el(alice, "room-title").text == "big")
        alice.find_element(By.CSS_SELECTOR, '#my-rooms li[data-room="lobby"] button').click()
        until(alice, "lobby open again", lambda: el(alice, "room-title").text == "The Lobby")
        a_tok = json.loads(alice.execute_script("return sessionStorage.getItem('parley.session')"))["token"]
        for i in range(1, 131):
            daemon.post("Messaging/Send", {"roomId": "big", "text": f"big {i}", "clientMsgId": f"b{i}"}, a_tok)
        # Bob joins big elsewhere (as the CLI would): his open page
        # notices it without a reload, from his JOINED in the feed (the
        # page says so only then; its fallback, a ListMyRooms look every
        # 30 s, adds a room silently).
        b_tok = json.loads(bob.execute_script("return sessionStorage.getItem('parley.session')"))["token"]
        daemon.post("Rooms/JoinRoom", {"roomId": "big"}, b_tok)
        until(bob, "big among his rooms", lambda: bob.find_elements(By.CSS_SELECTOR, '#my-rooms li[data-room="big"]'))
        until(bob, "the join announced, from the feed", lambda: "You joined big in another window."
              in el(bob, "announce").get_attribute("textContent"))
        ok("a room joined through the API joins the open page from the feed's JOINED")
        open_room_list(bob)
        bob.find_element(By.CSS_SELECTOR, '#my-rooms li[data-room="big"] button').click()
        until(bob, "the latest of big", lambda: has_text(bob, "big 130"))
        if has_text(bob, "big 1"):
            fail("the whole history came at once")
        for _ in range(10):
            # A page at a time: each scroll to the top while no page is
            # on its way asks for the one before.
            until(bob, "no page loading", lambda: "Loading" not in el(bob, "log-top").text)
            if has_text(bob, "big 1"):
                break
            n = len(texts(bob))
            bob.execute_script("document.getElementById('log-wrap').scrollTop = 0")
            until(bob, "an earlier page", lambda: len(texts(bob)) > n)
        until(bob, "the first message of big", lambda: has_text(bob, "big 1"))
        until(bob, "the beginning", lambda: el(bob, "log-top").text == "This is the beginning of the room.")
        if texts(bob) != [f"big {i}" for i in range(1, 131)]:
            fail(f"bob's history of big: {texts(bob)[:5]} ... ({len(texts(bob))})")
        check_once_in_order(bob, "bob in big")
        ok("history loads page by page as the reader scrolls up, once and in order")

        # --- leaving ---
        el(bob, "leave").click()
        until(bob, "big among the other rooms",
              lambda: bob.find_elements(By.CSS_SELECTOR, '#other-rooms li[data-room="big"] button')
              and not bob.find_elements(By.CSS_SELECTOR, '#my-rooms li[data-room="big"]'))
        until(bob, "big down to 1 member", lambda: bob.find_element(
            By.CSS_SELECTOR, '#other-rooms li[data-room="big"] .room-count').text == "1 member")
        if "another window" in visible_text(bob, "page-error"):
            fail(f"his own leave is told as news: {visible_text(bob, 'page-error')!r}")
        ok("leaving a room: back among the others, its member count follows")

        open_room_list(bob)
        bob.find_element(By.CSS_SELECTOR, '#my-rooms li[data-room="lobby"] button').click()
        until(bob, "lobby open again", lambda: has_text(bob, "while you were away"))

        # --- a reload shows everything once ---
        before = texts(bob)
        bob.refresh()
        until(bob, "lobby after the reload", lambda: el(bob, "room-title").is_displayed()
              and has_text(bob, "while you were away"))
        send(alice, "after the reload")
        until(bob, "a message after the reload", lambda: has_text(bob, "after the reload"))
        if texts(bob) != before + ["after the reload"]:
            fail(f"after the reload bob has {texts(bob)}, before {before}")
        check_once_in_order(bob, "bob after the reload")
        ok("a reload keeps the login and shows every message once")

        # --- the daemon goes away: pending, failed, retried; then no gap ---
        daemon.stop()
        for d in browsers:
            until(d, "the connection shown lost", lambda: "reconnecting" in visible_text(d, "conn").lower())
        send(alice, "typed while down")
        until(alice, "it pending", lambda: alice.find_elements(By.CSS_SELECTOR, "#log li.pending"))
        # Retried for 30 s, then failed with a retry button.
        until(alice, "it failed", lambda: alice.find_elements(By.CSS_SELECTOR, "#log li.failed button"), 60)
        why = alice.find_element(By.CSS_SELECTOR, "#log li.failed .why").text
        if "cannot be reached" not in why:
            fail(f"the failure reads {why!r}")
        send(alice, "sent when it is back")
        until(alice, "the second one pending", lambda: alice.find_elements(By.CSS_SELECTOR, "#log li.pending"))
        daemon.start()
        # While the pages reconnect, someone else's message goes in: the
        # resumed feeds must bring it.
        daemon.post("Messaging/Send", {"roomId": "lobby", "text": "from a script", "clientMsgId": "s1"}, b_tok)
        for d in browsers:
            until(d, "the connection back", lambda: d.find_element(By.ID, "conn").get_attribute("data-state") == "live")
        until(bob, "the waiting message", lambda: has_text(bob, "sent when it is back"))
        until(bob, "the script's message", lambda: has_text(bob, "from a script"))
        alice.find_element(By.CSS_SELECTOR, "#log li.failed button").click()
        until(bob, "the retried message", lambda: has_text(bob, "typed while down"))
        send(bob, "after the restart")
        until(alice, "bob after the restart", lambda: has_text(alice, "after the restart"))
        until(alice, "all acknowledged", lambda: not alice.find_elements(By.CSS_SELECTOR, "#log li.pending, #log li.failed"))
        a_seqs = check_once_in_order(alice, "alice after the restart")
        b_seqs = check_once_in_order(bob, "bob after the restart")
        tail = ["from a script", "typed while down", "after the restart"]
        for d in browsers:
            got = [t for t in texts(d) if t in tail + ["sent when it is back"]]
            if sorted(got) != sorted(tail + ["sent when it is back"]):
                fail(f"{d.who} after the restart: {got}")
        if a_seqs[-1] != b_seqs[-1]:
            fail(f"the two pages end at different seqs: {a_seqs[-1]} and {b_seqs[-1]}")
        ok("daemon restart: a waiting message went out, a failed one on Retry, both feeds resumed with no gap and no duplicate")

        # --- screenshots for people to look at ---
        send(bob, "<b>not bold</b> & not a link: javascript:alert(2)")
        until(alice, "the last message", lambda: has_text(alice, "<b>not bold</b> & not a link: javascript:alert(2)"))
        alice.save_screenshot(os.path.join(SHOTS, "desktop.png"))
        bob.save_screenshot(os.path.join(SHOTS, "narrow-360.png"))
        open_room_list(bob)
        bob.save_screenshot(os.path.join(SHOTS, "narrow-360-rooms.png"))
        ok(f"screenshots in {SHOTS}")

        # --- bob leaves the page: alice sees him go ---
        # A page navigated away from lives on in the back/forward cache,
        # and so did its Subscribe stream, until parleyd's HTTP idle cut
        # (60 s). The page ends its stream on pagehide: parleyd sees the
        # socket close, ends the session, and OFFLINE goes out (shown
        # after the page's 3 s grace). WAIT only bounds a hang; it is
        # below the idle cut, so a stream left open fails here.
        offline = lambda: sum(t.startswith("Bob is offline") for _, _, t in log_items(alice))
        seen = offline()
        online = lambda: sum(t.startswith("Bob is online") for _, _, t in log_items(alice))
        back_online = online() + 1
        bob.execute_script("window.parleyTestMark = 'the same page'")
        bob.get("about:blank")
        until(alice, "bob offline", lambda: offline() == seen + 1)
        # Back to the page: the cached page itself comes back (the mark
        # tells), and its feed resumes.
        bob.back()
        until(bob, "the page back from the cache",
              lambda: bob.execute_script("return window.parleyTestMark ?? null") == "the same page")
        until(alice, "bob online again", lambda: online() == back_online)
        send(alice, "welcome back")
        until(bob, "a message after coming back", lambda: has_text(bob, "welcome back"))
        check_once_in_order(bob, "bob back from the cache")
        ok("online and offline notices; a page left ends its stream at once, and resumes it when back")

        # --- log out; "stay logged in" picks localStorage ---
        el(alice, "logout").click()
        until(alice, "the login form", lambda: el(alice, "login-form").is_displayed())
        stored = alice.execute_script(
            "return [sessionStorage.getItem('parley.session'), localStorage.getItem('parley.session')]")
        if stored != [None, None]:
            fail(f"a token is left after logging out: {stored}")
        r = urllib.request.Request(daemon.url + "/parley.v1.Rooms/ListMyRooms", data=b"{}", method="POST",
                                   headers={"Content-Type": "application/json", "Authorization": "Bearer " + a_tok})
        try:
            urllib.request.urlopen(r, timeout=WAIT)
            fail("the token still works after logging out")
        except urllib.error.HTTPError as e:
            if e.code != 401:
                fail(f"the old token got HTTP {e.code}")
        type_into(alice, "login-user", "alice")
        type_into(alice, "login-password", "wrong password")
        el(alice, "login-password").send_keys(Keys.ENTER)
        until(alice, "the refusal in words", lambda: visible_text(alice, "login-error") == "Wrong user id or password.")
        type_into(alice, "login-password", "pw-alice-secret")
        el(alice, "login-stay").click()
        el(alice, "login-submit").click()
        until(alice, "the chat again", lambda: el(alice, "chat-screen").is_displayed())
        stored = alice.execute_script(
            "return [sessionStorage.getItem('parley.session'), localStorage.getItem('parley.session')]")
        if stored[0] is not None or stored[1] is None:
            fail(f"stay logged in: the token is not in localStorage only: {stored}")
        ok("log out forgets and revokes the token; 'stay logged in' keeps it in localStorage")

        alice.find_element(By.CSS_SELECTOR, '#my-rooms li[data-room="lobby"] button').click()
        until(alice, "lobby open", lambda: el(alice, "room-title").text == "The Lobby")
        el(alice, "show-members").click()
        until(alice, "bob's tools", lambda: (member(alice, "bob") or [0, 0, []])[2][:1] == ["Remove"])
        alice.execute_script("""[...document.querySelectorAll('#member-list li[data-user="bob"] button')]
            .find(b => b.textContent === 'Remove').click()""")
        until(alice, "the reason asked", lambda: alice.switch_to.active_element == el(alice, "reason-bob"))
        el(alice, "reason-bob").send_keys("not this")
        el(alice, "reason-bob").send_keys(Keys.ESCAPE)
        until(alice, "Escape cancels, back on Remove", lambda: not alice.find_elements(By.ID, "reason-bob")
              and alice.switch_to.active_element.text == "Remove" and not el(alice, "members").get_attribute("hidden"))
        alice.switch_to.active_element.send_keys(Keys.ENTER)
        until(alice, "the reason asked again", lambda: alice.switch_to.active_element == el(alice, "reason-bob"))
        el(alice, "reason-bob").send_keys("gone quiet", Keys.ENTER)
        until(alice, "bob removed", lambda: any(t.startswith("Bob was removed by Alice Liddell: gone quiet")
                                                for _, _, t in log_items(alice)))
        until(alice, "bob off the member list", lambda: member(alice, "bob") is None)
        # Bob's page learns the reason only from his KICKED in its feed.
        until(bob, "bob told by whom and why", lambda: visible_text(bob, "page-error") ==
              "Alice Liddell removed you from The Lobby: gone quiet")
        until(bob, "lobby gone from bob's rooms",
              lambda: not bob.find_elements(By.CSS_SELECTOR, '#my-rooms li[data-room="lobby"]')
              and bob.find_elements(By.CSS_SELECTOR, '#other-rooms li[data-room="lobby"]'))
        bob.save_screenshot(os.path.join(SHOTS, "narrow-360-removed.png"))
        # Bob joins big again and leaves it elsewhere: his page says so.
        # (Alice's message in big reaching his page first shows its new
        # stream up, with big in it.)
        daemon.post("Rooms/JoinRoom", {"roomId": "big"}, b_tok)
        until(bob, "big among his rooms again", lambda: bob.find_elements(By.CSS_SELECTOR, '#my-rooms li[data-room="big"]'))
        a_tok = json.loads(alice.execute_script("return localStorage.getItem('parley.session')"))["token"]
        daemon.post("Messaging/Send", {"roomId": "big", "text": "big again", "clientMsgId": "b-again"}, a_tok)
        until(bob, "the message in big counted", lambda: badge(bob, "big") == "1")
        daemon.post("Rooms/LeaveRoom", {"roomId": "big"}, b_tok)
        until(bob, "bob told he left", lambda: visible_text(bob, "page-error") == "You left big in another window.")
        until(bob, "big gone from his rooms", lambda: not bob.find_elements(By.CSS_SELECTOR, '#my-rooms li[data-room="big"]'))
        ok("an admin removes a member with a reason: the notice says who did it, the member is told why; a room left elsewhere is told too")

        for d in browsers:
            no_alert(d)
            errs = console_errors(d)
            if errs:
                fail(f"{d.who}: errors in the browser console: {errs}")
        ok("no alert, no console error (CSP violations would be errors)")
    except BaseException:
        try:  # the daemon's count of sessions and streams, for the failure's reader
            with urllib.request.urlopen(daemon.url + "/metrics", timeout=5) as r:
                print("--- metrics:", [l for l in r.read().decode().splitlines()
                                      if ("session" in l or "stream" in l) and not l.startswith("#")])
        except Exception:  # noqa: BLE001 - the daemon may be down
            pass
        for d in browsers:  # what each page showed, for the failure's reader
            try:
                print(f"--- {d.who}'s log:", log_items(d))
                print(f"--- {d.who}'s banner:", repr(el(d, "page-error").get_attribute("textContent")))
                print(f"--- {d.who}'s console:", d.get_log("browser"))
            except Exception:  # noqa: BLE001 - the browser may be gone
                pass
        raise
    finally:
        for d in browsers:
            try:
                d.quit()
            except Exception:  # noqa: BLE001 - cleaning up whatever state it is in
                pass
        daemon.stop()
        if os.environ.get("PARLEY_TEST_KEEP"):
            print("kept", work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
