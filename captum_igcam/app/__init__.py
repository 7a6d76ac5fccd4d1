"""The application around the Captum plugin: models with their preprocessing,
images, the method registry shared by the commands, the one per-photo
pipeline of ``explain`` and safe file writes.

Nothing in the plugin (``captum_igcam.integrated_grad_cam`` and its private
helpers) imports from here.
"""
