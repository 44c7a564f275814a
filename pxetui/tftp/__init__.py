"""TFTP pieces on top of tftpy's packet classes: request checks, option negotiation, transfers.

tftpy's own server is threaded and ignores RFC 7440 windowsize; pxetui keeps tftpy's wire
format (packet factory, encode/decode) and runs its own asyncio transfers around it.
"""
