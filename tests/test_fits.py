"""FITS files, read back with astropy (an independent reader): the writer, and stills and sessions
through the API."""

from __future__ import annotations

import dataclasses
import io
from datetime import UTC, datetime

import numpy as np
import pytest
from astropy.io import fits
from helpers import wait_until

from wanda.app import create_app
from wanda.jpeg import JpegEncoder
from wanda.keys import MEASURER
from wanda.storage.fits import card, fits_bytes, read_fits


def read(data: bytes) -> fits.PrimaryHDU:
    with fits.open(io.BytesIO(data)) as hdus:
        assert len(hdus) == 1
        hdus.verify("exception")  # the standard, strictly
        hdu = hdus[0]
        return fits.PrimaryHDU(hdu.data.copy(), hdu.header.copy())


def test_mono_data_round_trips_at_16_bits_with_bzero():
    data = np.arange(0, 65536, 7, dtype=np.uint16)[:9000].reshape(90, 100)
    raw = fits_bytes(data, [("EXPTIME", 30.0, "seconds"), ("IMAGETYP", "Light Frame", "")])
    assert len(raw) % 2880 == 0
    hdu = read(raw)
    assert hdu.header["BITPIX"] == 16 and hdu.header["BZERO"] == 32768 and hdu.header["NAXIS"] == 2
    assert (hdu.header["NAXIS1"], hdu.header["NAXIS2"]) == (100, 90)
    assert hdu.data.dtype == np.uint16 and np.array_equal(hdu.data, data)
    assert hdu.header["EXPTIME"] == 30.0 and hdu.header["IMAGETYP"] == "Light Frame"


def test_colour_is_three_planes():
    data = np.random.default_rng(1).integers(0, 65536, (3, 20, 30), dtype=np.uint16)
    hdu = read(fits_bytes(data))
    assert hdu.header["NAXIS"] == 3 and hdu.header["NAXIS3"] == 3
    assert np.array_equal(hdu.data, data)


def test_cards_follow_the_fixed_format():
    assert card("GAIN", 4.0) == b"GAIN    = " + b"4.".rjust(20) + b" " * 50
    assert card("SIMPLE", True)[:30] == b"SIMPLE  = " + b"T".rjust(20)
    assert card("OBJECT", "Barnard's Loop")[:27] == b"OBJECT  = 'Barnard''s Loop'"
    assert card("INSTRUME", "x")[:20] == b"INSTRUME= 'x       '"
    assert len(card("OBSERVER", "y" * 200)) == 80
    with pytest.raises(ValueError):
        card("OBJECT", "Orion é")  # FITS headers are ASCII
    with pytest.raises(ValueError):
        fits_bytes(np.zeros((2, 2), np.float64))  # uint16 frames and float32 stacks only


def test_a_float_stack_reads_back_in_astropy_and_in_the_gallerys_reader(tmp_path):
    from astropy.io import fits

    planes = np.linspace(0, 100, 3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    planes[0, 0, 0] = np.nan  # no frame reached it
    path = tmp_path / "stack.fits"
    path.write_bytes(fits_bytes(planes, [("NCOMBINE", 12, "frames")]))
    with fits.open(path) as hdus:
        assert hdus[0].header["BITPIX"] == -32 and hdus[0].header["NCOMBINE"] == 12
        assert np.array_equal(hdus[0].data, planes, equal_nan=True)
    image = read_fits(path)
    assert image.data.dtype == np.uint16 and image.data.shape == (3, 4, 5) and image.full_scale == 65535
    assert image.data.max() == 65535 and image.data[0, 0, 0] == 0


async def test_a_fits_still_through_the_api(aiohttp_client, config):
    config = dataclasses.replace(config, telescope="Skywatcher 80ED", observer="A. Observer", object="M42")
    client = await aiohttp_client(create_app(config))
    response = await client.post(
        "/api/camera/settings",
        json={"exposure_seconds": 0.2, "iso": 800, "file_format": "jpeg+fits", "frame_type": "dark"},
    )
    assert response.status == 200
    before = datetime.now(UTC)
    data = (await (await client.post("/api/camera/capture")).json())["data"]
    assert data["file"] == "dark_0001.jpg" and data["files"] == ["dark_0001.jpg", "dark_0001.fits"]
    hdu = read((config.captures / "dark_0001.fits").read_bytes())
    header = hdu.header
    assert header["IMAGETYP"] == "Dark Frame" and header["EXPTIME"] == data["exposure_seconds"] == 0.2
    assert header["GAIN"] == 8.0 and header["INSTRUME"].startswith("WANDA simulated sky")
    assert (header["TELESCOP"], header["OBSERVER"], header["OBJECT"]) == ("Skywatcher 80ED", "A. Observer", "M42")
    assert header["XPIXSZ"] == header["YPIXSZ"] == pytest.approx(4.366, abs=0.001)
    assert header["SWCREATE"].startswith("WANDA ")
    assert "BAYERPAT" not in header  # mono
    assert header["CCD-TEMP"] == 20.0 and "BLKLEVEL" not in header  # the sim's sensor: 20 C; no black level reported
    started = datetime.fromisoformat(header["DATE-OBS"]).replace(tzinfo=UTC)
    assert abs((started - before).total_seconds()) < 1.0  # the start of the exposure, UTC
    # The data is the linear 16-bit frame; the JPEG is the same frame at 8 bits.
    assert hdu.data.shape == (1080, 1440) and hdu.data.dtype == np.uint16
    jpeg = JpegEncoder().decode((config.captures / "dark_0001.jpg").read_bytes())[..., 0].astype(int)
    assert np.abs(jpeg - (hdu.data >> 8)).mean() < 2
    await wait_until(lambda: client.app[MEASURER].idle)  # the measurement rewrites the sidecar
    assert not [p.name for p in config.captures.iterdir() if p.name.startswith(".")]


async def test_a_session_of_fits_flats_names_its_files_by_type(client, config):
    await client.post("/api/camera/settings", json={"exposure_seconds": 0.05})
    response = await client.post(
        "/api/session/start",
        json={"name": "flats", "total_images": 2, "frame_type": "flat", "file_format": "fits", "object": "M 81"},
    )
    assert response.status == 200, await response.text()

    async def completed():
        return (await (await client.get("/api/session/status")).json())["data"]["status"] == "completed"

    await wait_until(completed)
    folder = config.captures / "flats"
    assert sorted(p.name for p in folder.glob("*.fits")) == ["flat_0001.fits", "flat_0002.fits"]
    assert not list(folder.glob("*.jpg"))
    header = read((folder / "flat_0002.fits").read_bytes()).header
    assert (header["IMAGETYP"], header["OBJECT"]) == ("Flat Frame", "M 81")
    camera = (await (await client.get("/api/camera/status")).json())["data"]
    assert (camera["frame_type"], camera["file_format"]) == ("light", "jpeg")  # the session's own
