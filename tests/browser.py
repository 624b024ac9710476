"Headless Chromium for tests (Debian's chromium + chromium-driver), offline and with a fresh profile."
import shutil, tempfile
from contextlib import contextmanager

CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run',
                  '--disable-component-update', '--disable-sync', '--disable-quic', '--window-size=1280,1000']


@contextmanager
def chromium():
    "A selenium Chrome driver on /usr/bin/chromium; quits and removes its profile afterwards."
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    profile = tempfile.mkdtemp(prefix='flexrl-chromium-')
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which('chromium') or '/usr/bin/chromium'
    for f in CHROMIUM_FLAGS + [f'--user-data-dir={profile}']: opts.add_argument(f)
    driver = webdriver.Chrome(service=Service(shutil.which('chromedriver') or '/usr/bin/chromedriver'), options=opts)
    try: yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
