"""ASCOM Alpaca: WANDA's camera and mount as network devices for N.I.N.A., PHD2, KStars/Ekos and
every Alpaca client, served by the same process as the page (docs/alpaca.md).

- ``protocol``: the rules apart from HTTP: error numbers, parameters, transaction numbers, the envelope
- ``device``: what every device has (common members, connection, the table of members)
- ``camera``, ``telescope``: Camera 0 and Telescope 0 over CameraControl and MountControl
- ``images``: ImageArray as JSON and as ImageBytes
- ``server``: the devices, their lasting unique IDs, the management API's answers
- ``discovery``: the UDP discovery responder (port 32227)

The HTTP side is wanda/handlers/alpaca_api.py; nothing here imports aiohttp.
"""
