"""The optic, the site and the simulated sky's settings: from every source, checked, and the sky
that create_backend builds from them."""

from __future__ import annotations

import re

import pytest

from wanda.astro.targets import MESSIER
from wanda.backends.choose import create_backend
from wanda.backends.sky import SimulatedSky
from wanda.cli import build_parser
from wanda.config import Config, ConfigError, load_config


def test_the_defaults_are_a_50_mm_lens_on_the_hq_camera_pointed_at_m42():
    config = Config()
    assert (config.focal_length_mm, config.pixel_size_um) == (50.0, 1.55)
    assert (config.latitude, config.longitude) == (None, None)
    assert config.sim_sky == "catalog" and config.sim_pointing == (*MESSIER["M42"], 0.0)
    sky = create_backend(Config(camera="sim"))
    assert isinstance(sky, SimulatedSky) and sky._field is not None
    assert sky.plate_scale == pytest.approx(18.01, abs=0.01) and sky.pixel_size_um == 4.366
    assert sky.details == {}  # /api/health says only its name, as before


def test_the_sky_follows_the_settings(tmp_path):
    file = tmp_path / "wanda.toml"
    file.write_text("sim_ra = 10.5\nsim_dec = 41.2\nfocal_length_mm = 135\nlatitude = -33.9\n")
    args = vars(build_parser().parse_args(["--sim-roll", "-20", "--longitude", "18.4", "--camera", "sim"]))
    args.pop("config")
    config = load_config(args, env={"WANDA_SIM_FWHM": "2.5"}, config_file=file)
    assert config.sim_pointing == (10.5, 41.2, 340.0)
    assert (config.latitude, config.longitude, config.focal_length_mm) == (-33.9, 18.4, 135.0)
    sky = create_backend(config)
    assert sky.plate_scale == pytest.approx(6.67, abs=0.01) and sky.fwhm == 2.5
    assert sky._field is not None and sky._field.latitude == -33.9
    by_name = load_config({"sim_ra": "M31"}, env={})
    assert by_name.sim_pointing == (*MESSIER["M31"], 0.0)
    random = create_backend(load_config({"sim_sky": "random", "camera": "sim"}, env={}))
    assert random._field is None and random.plate_scale == pytest.approx(18.01, abs=0.01)
    weather = create_backend(load_config({"sim_clouds": "0.4", "sim_temperature": "31.5", "camera": "sim"}, env={}))
    assert weather.clouds.cover == 0.4 and weather.temperature_c == 31.5


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"sim_ra": "Vega"}, "sim_ra: 'Vega' is neither degrees nor a known name"),
        ({"sim_ra": "83.8"}, "sim_ra: in degrees it needs sim_dec too"),
        ({"sim_ra": "M42", "sim_dec": "3"}, "sim_ra: M42 says where it is"),
        ({"sim_sky": "painted"}, "sim_sky: must be one of catalog, random"),
        ({"focal_length_mm": "0"}, "focal_length_mm: must be 1..10000 mm"),
        ({"latitude": "91"}, "latitude: must be -90..90 degrees"),
        ({"sim_clouds": "2"}, "sim_clouds: must be 0..1"),
        ({"sim_temperature": "120"}, "sim_temperature: must be -40..80 degrees"),
        ({"sim_dec": "north", "sim_ra": "10"}, "sim_dec (from --sim-dec): 'north' is not a valid float"),
    ],
)
def test_bad_sky_settings_name_their_field(values, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_config(values, env={})
