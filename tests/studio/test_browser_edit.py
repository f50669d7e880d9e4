"""The translate and paint pages in headless Chromium against a live studio (tiny trained models)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from pixforge.client import Client


def new_page(browser, live_studio, path: str):  # noqa: ANN001, ANN201 - Playwright objects
    page = browser.new_page(viewport={"width": 1280, "height": 820})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(live_studio.url + path)
    return page, errors


def render_via_api(live_studio, model: str, scene: dict) -> np.ndarray:  # noqa: ANN001
    request = urllib.request.Request(
        f"{live_studio.url}/studio/api/models/{model}/render",
        data=json.dumps(scene).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        from io import BytesIO

        return np.asarray(Image.open(BytesIO(response.read())).convert("RGB"), dtype=np.float64)


def wait_render(page, after: int) -> int:  # noqa: ANN001
    """Wait until the paint page shows a render newer than ``after``; returns its sequence number."""
    page.wait_for_function(
        "(n) => window.studio.shown > n && !window.studio.pending && !window.studio.inflight", arg=after
    )
    return int(page.evaluate("window.studio.shown"))


def test_translate_an_upload(browser, live_studio, synth_root: Path, tmp_path: Path, page_image) -> None:
    """An uploaded facade label picture is translated: the page shows exactly what the API returns for it."""
    aligned = Image.open(sorted((synth_root / "aligned" / "test").glob("*.png"))[0])
    labels = aligned.crop((aligned.width // 2, 0, aligned.width, aligned.height))
    upload = tmp_path / "labels.png"
    labels.save(upload)
    page, errors = new_page(browser, live_studio, "/studio/")
    page.select_option("#model", "facades")
    page.set_input_files("#file", str(upload))
    page.wait_for_function("document.querySelector('#output').dataset.seq !== undefined")
    shown = page_image(page, "#output")
    expected = np.asarray(Client(live_studio.url).translate(labels, model="facades"), dtype=np.float64)
    assert shown.shape == (32, 32, 3)
    assert np.abs(shown - expected).max() == 0
    assert not page.is_disabled("#download")
    page.screenshot(path=str(tmp_path / "translate.png"))
    assert not errors


def stroke(page, points: list[tuple[float, float]]) -> None:  # noqa: ANN001
    """Drag the mouse through ``points`` given as fractions of the label canvas."""
    box = page.locator("#overlay").bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=4)
    page.mouse.up()


def test_paint_a_stroke_changes_the_output(browser, live_studio, tmp_path: Path, page_image) -> None:
    """A brush stroke of another class re-renders the photo (and the page's render equals the server's)."""
    page, errors = new_page(browser, live_studio, "/studio/paint")
    page.select_option("#model", "facades")
    first = wait_render(page, 0)
    before = page_image(page, "#output")
    page.click("#palette button[data-class='4']")  # door
    page.fill("#size", "8")
    stroke(page, [(0.2, 0.5), (0.5, 0.55), (0.8, 0.6)])
    latest = wait_render(page, first)
    after = page_image(page, "#output")
    label = np.array(page.evaluate("Array.from(window.studio.label)")).reshape(32, 32)
    assert (label[15:21, 8:24] == 4).mean() > 0.9
    painted = np.zeros((32, 32), bool)
    painted[15:21, 8:24] = True
    change = np.abs(after - before).mean(-1)
    assert change[painted].mean() > max(0.5, 2 * change[~painted].mean())
    encoded = page.evaluate("JSON.stringify(window.studio.encode())")
    assert np.abs(render_via_api(live_studio, "facades", json.loads(encoded)) - after).max() == 0
    assert int(page.get_attribute("#output", "data-seq")) == latest
    page.screenshot(path=str(tmp_path / "paint.png"))
    assert not errors


def test_a_stale_render_never_overwrites_a_newer_one(browser, live_studio, tmp_path: Path) -> None:
    """The first of two renders is held back in the page's network layer: the newer one stays on screen."""
    page = browser.new_page()
    page.add_init_script(
        """
        const realFetch = window.fetch;
        window.delayed = [];
        window.fetch = async (url, options) => {
            const response = await realFetch(url, options);
            const seq = /render\\?seq=(\\d+)/.exec(String(url));
            if (seq && window.holdSeq === Number(seq[1])) {
                window.delayed.push(Number(seq[1]));
                await new Promise((done) => setTimeout(done, 3000));
                window.shownAtRelease = window.studio.shown;
            }
            return response;
        };
        """
    )
    page.goto(live_studio.url + "/studio/paint")
    first = wait_render(page, 0)
    page.evaluate(f"window.holdSeq = {first + 1}")
    page.click("#palette button[data-class='3']")
    stroke(page, [(0.2, 0.3), (0.8, 0.3)])
    page.wait_for_function(f"window.studio.seq >= {first + 1}")
    page.wait_for_timeout(200)
    page.click("#palette button[data-class='5']")
    stroke(page, [(0.2, 0.7), (0.8, 0.7)])
    page.wait_for_function(f"window.studio.shown >= {first + 2}")
    page.wait_for_function("window.delayed.length === 1 && window.shownAtRelease !== undefined")
    assert page.evaluate("window.shownAtRelease") == first + 2  # the newer render was on screen first
    page.wait_for_timeout(300)  # the held-back response is handled by now
    assert int(page.get_attribute("#output", "data-seq")) == first + 2
    assert int(page.evaluate("window.studio.shown")) == first + 2


def test_a_scene_load_overtaken_by_another_model_is_dropped(browser, live_studio) -> None:
    """The first model's sample arrives after the user picked pix2pixHD: the pix2pixHD scene stays on the canvas."""
    page = browser.new_page()
    page.add_init_script(
        """
        const realFetch = window.fetch;
        window.released = false;
        window.fetch = async (url, options) => {
            const response = await realFetch(url, options);
            if (/models\\/facades\\/samples\\//.test(String(url)) && !window.released) {
                await new Promise((done) => setTimeout(done, 1500));
                window.released = true;
            }
            return response;
        };
        """
    )
    page.goto(live_studio.url + "/studio/paint")
    page.wait_for_function("window.studio.models.length > 0 && window.studio.loads > 0")
    page.select_option("#model", "hd")
    page.wait_for_function("window.released")
    page.wait_for_timeout(300)  # the held-back sample is handled by now
    instance = np.array(page.evaluate("Array.from(window.studio.instance)"))
    assert page.evaluate("window.studio.loaded") == "hd"
    assert (instance >= 1000).any(), "the facades sample overwrote the pix2pixHD scene"


def test_select_an_instance_change_its_class_and_style(
    browser, live_studio, tmp_path: Path, page_image
) -> None:
    """pix2pixHD: select a window instance, make it a door with a chosen cluster: the change is in that region."""
    page, errors = new_page(browser, live_studio, "/studio/paint")
    page.select_option("#model", "hd")
    page.wait_for_function("window.studio.loaded === 'hd'")  # its scene, not the first model's, on the canvas
    first = wait_render(page, 0)
    before = page_image(page, "#output")
    instance = np.array(page.evaluate("Array.from(window.studio.instance)")).reshape(32, 32)
    label = np.array(page.evaluate("Array.from(window.studio.label)")).reshape(32, 32)
    ids, counts = np.unique(instance[instance >= 1000], return_counts=True)
    target = int(ids[counts.argmax()])
    mask = instance == target
    ys, xs = np.nonzero(mask)
    k = len(ys) // 2
    page.click("#tools button[data-tool='select']")
    box = page.locator("#overlay").bounding_box()
    page.mouse.click(
        box["x"] + (xs[k] + 0.5) * box["width"] / 32, box["y"] + (ys[k] + 0.5) * box["height"] / 32
    )
    assert page.text_content("#sel-id") == str(target)
    new_class = 3 if int(np.bincount(label[mask]).argmax()) != 3 else 2
    page.select_option("#sel-class", str(new_class))
    second = wait_render(page, first)
    page.select_option("#sel-cluster", "4")
    wait_render(page, second)
    after = page_image(page, "#output")
    edited = np.array(page.evaluate("Array.from(window.studio.label)")).reshape(32, 32)
    assert (edited[mask] == new_class).all() and (edited[~mask] == label[~mask]).all()
    assert page.evaluate(f"window.studio.clusters['{target}']") == 4
    change = np.abs(after - before).mean(-1)
    print("CHANGE", change[mask].mean(), change[~mask].mean())
    assert change[mask].mean() > max(0.5, 1.5 * change[~mask].mean())
    page.screenshot(path=str(tmp_path / "paint-instance.png"))
    assert not errors


def test_paint_tools_undo_redo_and_scene_files(browser, live_studio, tmp_path: Path) -> None:
    """Rectangle with a new instance, fill, eraser, undo/redo on the maps; a saved scene loads back unchanged."""
    page, errors = new_page(browser, live_studio, "/studio/paint")
    page.select_option("#model", "hd")
    page.wait_for_function("window.studio.loaded === 'hd' && window.studio.shown > 0")

    def maps() -> tuple[np.ndarray, np.ndarray]:
        label = np.array(page.evaluate("Array.from(window.studio.label)")).reshape(32, 32)
        return label, np.array(page.evaluate("Array.from(window.studio.instance)")).reshape(32, 32)

    start_label, start_instance = maps()
    page.click("#tools button[data-tool='rect']")
    page.click("#palette button[data-class='11']")
    page.check("#new-instance")
    stroke(page, [(4.5 / 32, 4.5 / 32), (12.5 / 32, 10.5 / 32)])
    label, instance = maps()
    assert (label[4:11, 4:13] == 11).all() and len(np.unique(instance[4:11, 4:13])) == 1
    assert instance[5, 5] // 1000 == 11 and instance[5, 5] not in start_instance
    assert (label[20:, :] == start_label[20:, :]).all()
    page.click("#undo")
    assert (maps()[0] == start_label).all()
    page.click("#redo")
    assert (maps()[0] == label).all()
    page.uncheck("#new-instance")
    page.click("#tools button[data-tool='fill']")
    page.click("#palette button[data-class='6']")
    stroke(page, [(6.5 / 32, 6.5 / 32)])
    assert (maps()[0][4:11, 4:13] == 6).all() and (maps()[0][20:, :] == start_label[20:, :]).all()
    page.click("#tools button[data-tool='eraser']")
    stroke(page, [(8.5 / 32, 8.5 / 32)])
    assert maps()[0][8, 8] == 0  # the first class (unlabeled) of the synthetic labeled data
    edited_label, edited_instance = maps()
    with page.expect_download() as saved:
        page.click("#save")
    scene = tmp_path / "scene.json"
    saved.value.save_as(scene)
    page.select_option("#start", "blank")
    page.click("#load-start")
    assert (maps()[0] == 0).all()
    page.set_input_files("#open", str(scene))
    page.wait_for_function("window.studio.label.some((v) => v !== 0)")
    assert (maps()[0] == edited_label).all() and (maps()[1] == edited_instance).all()
    assert json.loads(scene.read_text())["model"] == "hd"
    assert not errors


def test_translate_label_maps_with_a_style_and_region_overlays(
    browser, live_studio, synth_root: Path, tmp_path: Path, page_image
) -> None:
    """pix2pixHD: label + instance uploads with a chosen cluster; DRPAN: its score map and region as overlays."""
    stem = sorted((synth_root / "labeled" / "test" / "labels").glob("*.png"))[0].name
    label, instance = (synth_root / "labeled" / "test" / kind / stem for kind in ("labels", "instances"))
    page, errors = new_page(browser, live_studio, "/studio/")
    page.select_option("#model", "hd")
    page.select_option("#style-kind", "cluster")
    page.fill("#style-value", "2")
    page.set_input_files("#instance", str(instance))
    page.set_input_files("#file", str(label))
    page.wait_for_function("document.querySelector('#output').dataset.seq !== undefined")
    page.wait_for_function("window.studio.seq === Number(document.querySelector('#output').dataset.seq)")
    expected = Client(live_studio.url).translate(
        model="hd", label=Image.open(label), instance=instance.read_bytes(), cluster=2
    )
    assert np.abs(page_image(page, "#output") - np.asarray(expected, dtype=np.float64)).max() == 0
    aligned = Image.open(sorted((synth_root / "aligned" / "test").glob("*.png"))[0])
    upload = tmp_path / "labels.png"
    aligned.crop((aligned.width // 2, 0, aligned.width, aligned.height)).save(upload)
    page.select_option("#model", "drpan")
    page.set_input_files("#file", str(upload))
    page.check("#explain-region")
    page.wait_for_selector("#output-frame img.overlay[data-map='region']")
    assert page.locator("#output-frame img.overlay").count() == 2
    page.screenshot(path=str(tmp_path / "translate-overlays.png"))
    page.uncheck("#explain-region")
    page.wait_for_function("document.querySelectorAll('#output-frame img.overlay').length === 0")
    assert not errors


def test_a_rejected_upload_clears_the_earlier_output(
    browser, live_studio, synth_root: Path, tmp_path: Path
) -> None:
    """An accepted upload, then a rejected one: no old output on screen and nothing to download."""
    aligned = Image.open(sorted((synth_root / "aligned" / "test").glob("*.png"))[0])
    good = tmp_path / "labels.png"
    aligned.crop((aligned.width // 2, 0, aligned.width, aligned.height)).save(good)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    page, errors = new_page(browser, live_studio, "/studio/")
    page.select_option("#model", "facades")
    page.set_input_files("#file", str(good))
    page.wait_for_function("document.querySelector('#output').dataset.seq !== undefined")
    assert not page.is_disabled("#download")
    page.set_input_files("#file", str(bad))
    page.wait_for_function("document.querySelector('#error').textContent !== ''")
    assert page.locator("#output").is_hidden() and page.is_disabled("#download")
    assert page.get_attribute("#output", "src") is None
    assert "trained 40 steps" in page.text_content("#model-info")
    assert "test scores: psnr " in page.text_content("#model-info")
    assert not errors


def test_paint_shortcuts_help_downloads_and_scene_owner(
    browser, live_studio, tmp_path: Path, page_image
) -> None:
    """Keys pick tools, classes and sizes; the help panel names the canvas size; a stroke renders at pointer-up;
    the photo and label map download under the input's name; a scene opened in another model says so."""
    page, errors = new_page(browser, live_studio, "/studio/paint")
    page.select_option("#model", "facades")
    page.wait_for_function("window.studio.loaded === 'facades'")
    wait_render(page, 0)
    classes = page.evaluate("window.studio.model.classes.map((c) => c.id)")
    page.keyboard.press("e")
    page.keyboard.press("3")
    size = int(page.input_value("#size"))
    page.keyboard.press("]")
    assert page.evaluate("[window.studio.tool, window.studio.cls]") == ["eraser", classes[2]]
    assert int(page.input_value("#size")) == size + 1
    page.keyboard.press("?")
    assert page.evaluate("document.querySelector('#help').open")
    assert "32×32" in page.text_content("#help") and "New instance" in page.text_content("#help")
    page.keyboard.press("b")
    box = page.locator("#overlay").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    before, started, waiting = page.evaluate(
        """() => {
            const overlay = document.querySelector('#overlay'), r = overlay.getBoundingClientRect();
            const before = window.studio.seq;
            overlay.dispatchEvent(new PointerEvent('pointerup',
                { clientX: r.left + r.width / 2, clientY: r.top + r.height / 2, pointerId: 1, bubbles: true }));
            return [before, window.studio.seq, window.studio.pending];
        }"""
    )
    page.mouse.up()
    assert started == before + 1 and not waiting  # sent at pointer-up, no debounce wait
    wait_render(page, before)
    with page.expect_download() as photo:
        page.click("#download-photo")
    assert photo.value.suggested_filename == "facades-sample1-photo.png"
    photo.value.save_as(tmp_path / "photo.png")
    shown = page_image(page, "#output")
    assert np.array_equal(
        np.asarray(Image.open(tmp_path / "photo.png").convert("RGB"), dtype=np.float64), shown
    )
    with page.expect_download() as labels:
        page.click("#download-labels")
    assert labels.value.suggested_filename == "facades-sample1-labels.png"
    with page.expect_download() as saved:
        page.click("#save")
    scene = tmp_path / "facades-scene.json"
    saved.value.save_as(scene)
    page.select_option("#model", "hd")
    page.wait_for_function("window.studio.loaded === 'hd'")
    assert page.text_content("#note") == ""
    page.set_input_files("#open", str(scene))
    page.wait_for_function(
        "document.querySelector('#note').textContent.includes('painted for model facades')"
    )
    assert page.text_content("#note").endswith("rendered with hd.")
    page.select_option("#start", "0")
    page.click("#load-start")
    page.wait_for_function("window.studio.instance.some((v) => v >= 1000)")  # the sample replaced the scene
    instance = np.array(page.evaluate("Array.from(window.studio.instance)")).reshape(32, 32)
    ids, counts = np.unique(instance[instance >= 1000], return_counts=True)
    ys, xs = np.nonzero(instance == int(ids[counts.argmax()]))
    page.keyboard.press("s")
    page.mouse.click(
        box["x"] + (xs[len(xs) // 2] + 0.5) * box["width"] / 32,
        box["y"] + (ys[len(ys) // 2] + 0.5) * box["height"] / 32,
    )
    names = page.evaluate(
        "Array.from(document.querySelectorAll('#sel-cluster option')).map((o) => o.textContent)"
    )
    assert names[1] == "cluster 0"  # numbered from 0, as on the Translate page and in the API
    assert not errors
