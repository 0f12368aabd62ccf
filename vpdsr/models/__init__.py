"""Model families (our VPDSR, ResShift/SinSR, GAN SR), presets, save/load: the one `SRModel` API."""
from vpdsr.models import gan  # noqa: E402,F401  (registers the GANSR family and its presets)
from vpdsr.models.autoencoder import AutoencoderConfig
from vpdsr.models.checkpoint import build, from_pretrained, load_config, save_pretrained
from vpdsr.models.config import ModelConfig
from vpdsr.models.denoiser import DenoiserConfig
from vpdsr.models.families import SRModel, get_family, register_family
from vpdsr.models.presets import get_preset, preset_names, register_preset
from vpdsr.models.resshift import ResShiftConfig, ResShiftSR  # registers the ResShift family
from vpdsr.models.schedule import ResShiftSchedule, ScheduleConfig, eta_schedule
from vpdsr.models.vpdsr import VPDSR, DecoderStage, DenoiserStage, EncoderStage

__all__ = [
    "AutoencoderConfig", "DenoiserConfig", "ScheduleConfig", "ModelConfig", "VPDSR", "ResShiftSchedule",
    "EncoderStage", "DenoiserStage", "DecoderStage", "build", "from_pretrained", "save_pretrained",
    "get_preset", "preset_names", "eta_schedule", "SRModel", "get_family", "register_family", "register_preset",
    "load_config", "ResShiftSR", "ResShiftConfig",
]
