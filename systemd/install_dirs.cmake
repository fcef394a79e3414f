# Where systemd, udev and the module loader look for what we install. The
# defaults come from systemd's and udev's pkg-config files where they exist
# (Debian 12's say /lib/..., where its packages still put such files), else
# the usual places under the prefix. Packages pass them explicitly
# (debian/rules, rpm/vramswap.spec).
pkg_get_variable(_systemd_units systemd systemdsystemunitdir)
pkg_get_variable(_systemd_generators systemd systemdsystemgeneratordir)
pkg_get_variable(_modules_load systemd modulesloaddir)
pkg_get_variable(_udev udev udevdir)
if(NOT _systemd_units)
  set(_systemd_units "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
endif()
if(NOT _systemd_generators)
  set(_systemd_generators "${CMAKE_INSTALL_PREFIX}/lib/systemd/system-generators")
endif()
if(NOT _modules_load)
  set(_modules_load "${CMAKE_INSTALL_PREFIX}/lib/modules-load.d")
endif()
if(_udev)
  set(_udev "${_udev}/rules.d")
else()
  set(_udev "${CMAKE_INSTALL_PREFIX}/lib/udev/rules.d")
endif()

set(VRAMSWAP_SYSTEMD_UNIT_DIR "${_systemd_units}" CACHE PATH "systemd system unit directory")
set(VRAMSWAP_SYSTEMD_GENERATOR_DIR "${_systemd_generators}" CACHE PATH
    "systemd system generator directory")
set(VRAMSWAP_MODULES_LOAD_DIR "${_modules_load}" CACHE PATH "modules-load.d directory")
set(VRAMSWAP_UDEV_RULES_DIR "${_udev}" CACHE PATH "udev rules directory")
# logind reads drop-ins from here on every distribution (logind.conf(5)).
set(VRAMSWAP_LOGIND_CONF_DIR "${CMAKE_INSTALL_PREFIX}/lib/systemd/logind.conf.d" CACHE PATH
    "systemd-logind drop-in directory")
# The daemon's own default is /etc/vramswap.conf: the same for the /usr prefix.
set(VRAMSWAP_CONFIG_FILE "${CMAKE_INSTALL_FULL_SYSCONFDIR}/vramswap.conf" CACHE FILEPATH
    "the configuration file the units and the generator use")
