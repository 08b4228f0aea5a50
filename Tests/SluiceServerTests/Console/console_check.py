#!/usr/bin/env python3
"""Drives the web console in a real headless Chromium (selenium + chromedriver) against a running agent.

Usage: console_check.py BASE_URL SCREENSHOT_DIR EXPECT_JSON
EXPECT_JSON names what the test's workload made: {"topic", "group", "subscription", "dlq_topic", "saga",
"trace", "source", "token" (optional)}. Each page must load without browser console errors and show that data;
the replay button must replay (the DLQ empties). One screenshot per page, desktop and phone sized. Exit 0 when
every check passed, else 1 with what failed.
"""
import json
import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

base, shots, expect = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
os.makedirs(shots, exist_ok=True)
failures = []

options = Options()
options.binary_location = "/usr/bin/chromium"
for argument in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                 "--no-first-run", "--disable-extensions", "--proxy-server=direct://", "--proxy-bypass-list=*"]:
    options.add_argument(argument)
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
driver.set_page_load_timeout(30)


def check(condition, what):
    if not condition:
        failures.append(what)
    return condition


def wait_for(predicate, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if predicate():
                return True
        except Exception:
            pass
        time.sleep(0.2)
    failures.append(f"{what} (timed out; page text: {driver.find_element(By.TAG_NAME, 'main').text[:400]!r})")
    return False


def act(selector, action, until, what):
    """Finds `selector` and does `action` to it until `until()` holds: the console re-draws every 2 s, so an
    element found just before a refresh is gone (a user would simply click again)."""
    def attempt():
        if until():
            return True
        action(driver.find_element(By.CSS_SELECTOR, selector))
        time.sleep(0.3)
        return until()
    return wait_for(attempt, what)


def text():
    return driver.find_element(By.TAG_NAME, "main").text


def console_errors():
    return [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]


def page(name, hash_, expected, screenshot):
    driver.get(f"{base}/ui{hash_}")
    ok = wait_for(lambda: all(e in text() for e in expected), f"{name}: shows {expected}")
    errors = console_errors()
    check(not errors, f"{name}: browser console errors {errors}")
    driver.save_screenshot(os.path.join(shots, screenshot))
    return ok


try:
    driver.get(f"{base}/ui")
    if expect.get("token"):
        # The page is static; its data needs the token, which the console asks for.
        wait_for(lambda: driver.find_elements(By.ID, "token"), "asks for the token")
        driver.save_screenshot(os.path.join(shots, "token.png"))
        driver.find_element(By.ID, "token").send_keys(expect["token"])
        driver.find_element(By.CSS_SELECTOR, "#token-form button").click()
        # The 401 that made it ask is logged by the browser; only errors after it count.
        driver.get_log("browser")

    page("topics", "#/topics", [expect["topic"]], "topics.png")
    page("groups", "#/groups", [expect["group"], "OK"], "groups.png")
    page("subscriptions", "#/subscriptions", [expect["subscription"], "closed"], "subscriptions.png")
    page("sagas", "#/sagas", [expect["saga"], "completed"], "sagas.png")
    page("saga timeline", "#/sagas/" + expect["saga"], ["Saga " + expect["saga"], "reserve", "ship"], "saga-timeline.png")
    page("traces", "#/traces", [expect["trace"]], "traces.png")
    if page("trace", "#/traces/" + expect["trace"], ["Waterfall", "Causation tree", "dead-lettered for"], "trace.png"):
        check(len(driver.find_elements(By.CSS_SELECTOR, "#waterfall .bar")) >= 3, "trace: the waterfall has a bar per hop")
        check(len(driver.find_elements(By.CSS_SELECTOR, "#tree li")) >= 1, "trace: the causation tree has nodes")
    if page("flow", "#/flow", ["Event flow"], "flow.png"):
        # Read in one script call: the map is re-drawn every 2 s, so elements found one by one can go stale.
        def labels():
            return driver.execute_script("return Array.from(document.querySelectorAll('#flow text'), t => t.textContent).join(' ')")
        for wanted in [expect["source"], expect["topic"], expect["subscription"], "saga " + expect["saga_type"]]:
            if not wait_for(lambda: wanted in labels(), f"flow: the map names {wanted!r}", timeout=5):
                failures.append(f"flow: the map's labels are {labels()[:300]!r}")
        wait_for(lambda: driver.execute_script("return document.querySelectorAll('#flow path.edge').length") >= 3,
                 "flow: edges are drawn", timeout=5)

    # The DLQ browser: the letter's headers and failure history, then the replay button.
    if page("dead letters", "#/dlq/" + expect["dlq_topic"], [expect["dlq_topic"], "http_error"], "dlq.png"):
        act("#dlq-letters tr.click", lambda row: row.click(), lambda: "Failure history" in text() and "sluice.dlq.error.type" in text(),
            "dlq: a letter's headers and failure history")
        driver.save_screenshot(os.path.join(shots, "dlq-letter.png"))
        field = "#replay input[name=subscription]"
        act(field, lambda el: (el.clear(), el.send_keys(expect["subscription"])),
            lambda: driver.find_element(By.CSS_SELECTOR, field).get_attribute("value") == expect["subscription"], "dlq: the replay filter takes input")
        act("#replay-button", lambda el: el.click(), lambda: "replay " in driver.find_element(By.ID, "replay-progress").text, "dlq: the replay button starts a replay")
        wait_for(lambda: "1 delivered" in driver.find_element(By.ID, "replay-progress").text
                 and "(done)" in driver.find_element(By.ID, "replay-progress").text, "dlq: the replay button replays")
        driver.save_screenshot(os.path.join(shots, "dlq-replayed.png"))
        check(not console_errors(), "dlq: no browser console errors after the replay")

    # A phone-sized screen: the same pages fit (no page-wide horizontal scroll; tables scroll in their box).
    driver.set_window_size(390, 844)
    for name, hash_ in [("topics", "#/topics"), ("trace", "#/traces/" + expect["trace"]), ("flow", "#/flow")]:
        driver.get(f"{base}/ui{hash_}")
        time.sleep(1)
        overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        check(overflow <= 1, f"phone {name}: the page is {overflow}px wider than the screen")
        driver.save_screenshot(os.path.join(shots, f"phone-{name}.png"))
    check(not console_errors(), "phone: no browser console errors")
except Exception as error:  # a page that broke the driver: say where, with the page as it was
    failures.append(f"{type(error).__name__}: {error}; page text: {text()[:400]!r}")
finally:
    driver.quit()

if failures:
    print("\n".join(failures))
    with open(os.path.join(shots, "failures.txt"), "w") as out:
        out.write("\n".join(failures) + "\n")
    sys.exit(1)
print("console: every page checked")
