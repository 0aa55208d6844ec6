"""dipstop: Deep Image Prior denoising that stops itself."""
