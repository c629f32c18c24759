"""Where to point by name: a small built-in table of Messier objects (J2000), until a deep-sky
catalogue comes (issue 17.3). Pure Python, no numpy: the configuration checks names with it."""

from __future__ import annotations

# Centres in degrees (ICRS/J2000), from the objects' standard positions, rounded to 0.001 degree.
MESSIER: dict[str, tuple[float, float]] = {
    "M1": (83.633, 22.015),  # Crab Nebula
    "M8": (270.904, -24.387),  # Lagoon Nebula
    "M11": (282.775, -6.267),  # Wild Duck Cluster
    "M13": (250.423, 36.461),  # Hercules Cluster
    "M16": (274.700, -13.817),  # Eagle Nebula
    "M20": (270.596, -23.030),  # Trifid Nebula
    "M27": (299.902, 22.721),  # Dumbbell Nebula
    "M31": (10.685, 41.269),  # Andromeda Galaxy
    "M33": (23.462, 30.660),  # Triangulum Galaxy
    "M42": (83.822, -5.391),  # Orion Nebula
    "M44": (130.100, 19.667),  # Beehive Cluster
    "M45": (56.850, 24.117),  # Pleiades
    "M51": (202.470, 47.195),  # Whirlpool Galaxy
    "M57": (283.396, 33.029),  # Ring Nebula
    "M81": (148.888, 69.065),  # Bode's Galaxy
    "M101": (210.802, 54.349),  # Pinwheel Galaxy
    "M104": (189.998, -11.623),  # Sombrero Galaxy
}


def resolve_pointing(ra: str | float, dec: float | None) -> tuple[float, float]:
    """(RA, Dec) in degrees from an RA in degrees and a Dec, or from a name (``M42``, ``m 42``)
    alone. Raises ValueError saying what is wrong, in words a configuration error can carry."""
    text = str(ra).strip()
    try:
        degrees = float(text)
    except ValueError:
        name = text.upper().replace(" ", "")
        if name not in MESSIER:
            raise ValueError(
                f"{text!r} is neither degrees nor a known name ({', '.join(sorted(MESSIER, key=lambda n: int(n[1:])))})"
            ) from None
        if dec is not None:
            raise ValueError(f"{name} says where it is: leave sim_dec out, or give sim_ra in degrees") from None
        return MESSIER[name]
    if dec is None:
        raise ValueError("in degrees it needs sim_dec too")
    if not 0 <= degrees < 360:
        raise ValueError(f"{degrees:g} degrees is outside 0..360")
    if not -90 <= dec <= 90:
        raise ValueError(f"sim_dec {dec:g} is outside -90..90")
    return degrees, float(dec)
