"""Process-aware logging setup (maskrcnn-benchmark's `setup_logger`)."""
import logging
import os
import sys

_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"


def setup_logger(name, save_dir, distributed_rank, filename="log.txt"):
    """Logger `name` at DEBUG level printing to stdout and, if `save_dir`, appending to
    <save_dir>/<filename>. Processes other than rank 0 get the logger with no handlers added, so
    only the main process prints. Calling it again replaces the handlers it added before instead of
    duplicating every line."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    for handler in [h for h in logger.handlers if getattr(h, "_maskrcnn_setup", False)]:
        logger.removeHandler(handler)
        handler.close()
    if distributed_rank > 0:
        return logger
    formatter = logging.Formatter(_FORMAT)
    handlers = [logging.StreamHandler(stream=sys.stdout)]
    if save_dir:
        os.makedirs(save_dir, exist_ok=True)
        handlers.append(logging.FileHandler(os.path.join(save_dir, filename)))
    for handler in handlers:
        handler.setLevel(logging.DEBUG)
        handler.setFormatter(formatter)
        handler._maskrcnn_setup = True
        logger.addHandler(handler)
    return logger
