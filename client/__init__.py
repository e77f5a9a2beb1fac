"""The client side of neural-mirage, for scripts and for the editor plug-ins.

One package: ``neural-mirage install-plugin`` copies it whole into each plug-in (as ``_mirage``),
so the editors run exactly this code. Only :mod:`.protocol`, :mod:`.zmq_client` and
:mod:`.relay` need msgpack and pyzmq; everything else is the standard library, for editors whose
Python has neither (they reach the daemon through the relay process, :mod:`.bridge`).

- :mod:`.protocol`: the wire format (docs/protocol.md).
- :mod:`.locate`: where a running daemon is, and how to start one.
- :mod:`.job`: what a job ends with: :class:`~.job.Result`, or an error.
- :mod:`.zmq_client`: :class:`~.zmq_client.Client` and its job watch, over pyzmq.
- :mod:`.bridge`: the same interface through the relay process, and the relay's framing.
- :mod:`.connection`: one way in for the plug-ins (pyzmq or bridge), and errors worded for them.
- :mod:`.presets`, :mod:`.plan`: the dialogs' settings and the render size decided with the daemon.
"""
